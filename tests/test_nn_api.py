"""The engine's API contract: config round trips, state dicts, errors, dtypes, seeding, schedules."""

import json

import numpy as np
import pytest

from digit_recognizer import nn
from float32 import assert_float32_close

ALL_LAYERS = [
    nn.Dense(6, 3), nn.Conv2D(2, 4, 3, stride=2, padding=1), nn.MaxPool2D(2), nn.MaxPool2D(3, stride=1),
    nn.AvgPool2D(2), nn.GlobalAvgPool2D(), nn.Flatten(), nn.Dropout(0.3), nn.BatchNorm1D(5),
    nn.BatchNorm2D(2), nn.ReLU(), nn.LeakyReLU(0.2), nn.Sigmoid(), nn.Tanh(), nn.GELU(), nn.Softmax(),
]


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=repr)
def test_config_rebuilds_the_layer(layer):
    rebuilt = getattr(nn, type(layer).__name__)(**layer.config())
    assert type(rebuilt) is type(layer) and rebuilt.config() == layer.config()
    json.dumps(layer.config())
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in layer.parameters()]


def small_cnn():
    return nn.Sequential(nn.Conv2D(1, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2D(4), nn.MaxPool2D(2),
                         nn.Flatten(), nn.Dropout(0.5), nn.Dense(4 * 4 * 4, 10))


def test_parameters_are_float32_in_pytorch_layout():
    net = small_cnn()
    assert [p.shape for p in net.parameters()] == [(4, 1, 3, 3), (4,), (4,), (4,), (10, 64), (10,)]
    assert all(p.data.dtype == np.float32 and p.grad is None for p in net.parameters())


def test_state_dict_round_trip_includes_batchnorm_statistics():
    nn.manual_seed(1)
    net = small_cnn()
    x = np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32)
    net.forward(x, training=True)  # moves the running statistics
    state = net.state_dict()
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias", "2.running_mean", "2.running_var",
                           "6.weight", "6.bias"]
    assert not np.allclose(state["2.running_mean"], 0)
    other = small_cnn()
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.forward(x), net.forward(x))
    state["0.weight"][...] = 0  # state_dict returns copies
    assert np.abs(net[0].weight.data).sum() > 0


def test_load_state_dict_rejects_mismatches():
    net, state = small_cnn(), small_cnn().state_dict()
    with pytest.raises(ValueError, match="shape"):
        net.load_state_dict({**state, "6.weight": np.zeros((10, 65), np.float32)})
    with pytest.raises(ValueError, match="2"):
        net.load_state_dict({k: v for k, v in state.items() if k != "2.running_var"})
    with pytest.raises(ValueError, match="unexpected"):
        net.load_state_dict({**state, "9.weight": np.zeros(1)})


@pytest.mark.parametrize("layer, x, expected", [
    (nn.Dense(784, 10), np.zeros((2, 785), np.float32), r"Dense.*\(N, 784\)"),
    (nn.Dense(4, 2), np.zeros((2, 4), np.uint8), r"Dense.*\(N, 4\).*uint8"),
    (nn.Conv2D(1, 8, 3), np.zeros((2, 28, 28), np.float32), r"Conv2D.*\(N, 1, H, W\)"),
    (nn.Conv2D(3, 8, 3), np.zeros((2, 1, 28, 28), np.float32), r"Conv2D.*\(N, 3, H, W\)"),
    (nn.Conv2D(1, 8, 5), np.zeros((2, 1, 3, 3), np.float32), r"Conv2D.*smaller than the kernel"),
    (nn.MaxPool2D(2), np.zeros((2, 4), np.float32), r"MaxPool2D.*\(N, C, H, W\)"),
    (nn.BatchNorm2D(4), np.zeros((2, 3, 5, 5), np.float32), r"BatchNorm2D.*\(N, 4, H, W\)"),
    (nn.ReLU(), [1.0, 2.0], r"ReLU.*list"),
])
def test_wrong_input_names_the_layer_and_expected_shape(layer, x, expected):
    with pytest.raises(ValueError, match=expected):
        layer.forward(x)


@pytest.mark.parametrize("training", [False, True])
def test_wrong_input_to_a_network_reports_the_callers_shape(training):
    net = nn.Sequential(nn.Conv2D(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Dense(8 * 26 * 26, 10))
    with pytest.raises(ValueError, match=r"Conv2D.*\(N, 3, H, W\).*\(16, 1, 28, 28\)"):
        net.forward(np.zeros((16, 1, 28, 28), np.float32), training=training)


def test_empty_batch_inference(engine_path):
    net = nn.Sequential(nn.Conv2D(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(), nn.Dense(8, 3))
    assert net.forward(np.zeros((0, 1, 4, 4), np.float32)).shape == (0, 3)


def test_loss_input_errors():
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        nn.softmax_cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 3]))
    with pytest.raises(ValueError, match="empty batch"):
        nn.softmax_cross_entropy(np.zeros((0, 3), np.float32), np.array([], np.int64))
    with pytest.raises(ValueError, match="integer labels"):
        nn.softmax_cross_entropy(np.zeros((2, 3), np.float32), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="same shape"):
        nn.mse_loss(np.zeros((2, 3), np.float32), np.zeros((3, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_computation_follows_the_input_dtype(engine_path, dtype):
    net = small_cnn()
    if dtype == np.float64:
        net.astype(np.float64)
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(dtype)
    y = net.forward(x, training=True)
    _, g = nn.softmax_cross_entropy(y, np.array([1, 2, 3]))
    dx = net.backward(g)
    assert y.dtype == g.dtype == dx.dtype == dtype
    assert all(p.grad.dtype == dtype for p in net.parameters())


def test_inference_keeps_no_caches(engine_path):
    net = small_cnn()
    x = np.ones((2, 1, 8, 8), np.float32)
    net.forward(x, training=True)
    net.forward(x)  # training=False drops what the training pass kept
    for layer in net:
        cached = [v for k, v in vars(layer).items() if k.startswith("_") and v is not None]
        assert cached == [], f"{layer!r} keeps {len(cached)} cached arrays"
    with pytest.raises(RuntimeError, match="forward\\(training=True\\)"):
        net.backward(np.ones((2, 10), np.float32))


@pytest.mark.parametrize("layers", [
    (nn.ReLU(),), (nn.Flatten(), nn.ReLU()), (nn.Dropout(0.5), nn.BatchNorm2D(2), nn.ReLU()),
    (nn.Conv2D(2, 3, 3), nn.MaxPool2D(2), nn.BatchNorm2D(3), nn.ReLU(), nn.Flatten(), nn.Dense(12, 4),
     nn.BatchNorm1D(4), nn.ReLU()),
], ids=lambda layers: "-".join(type(layer).__name__ for layer in layers))
def test_sequential_inference_overwrites_only_its_own_arrays(engine_path, layers):
    """At inference, the fast path works in place on intermediates, never on the caller's array."""
    net = nn.Sequential(*layers)
    rng = np.random.default_rng(0)
    for layer in net:  # BatchNorm statistics that change the values
        if isinstance(layer, (nn.BatchNorm1D, nn.BatchNorm2D)):
            layer.running_mean[...] = rng.standard_normal(layer.num_features)
            layer.running_var[...] = rng.uniform(0.5, 2.0, layer.num_features)
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    original = x.copy()
    expected = original
    for layer in net:  # each layer alone, on the reference path
        expected = layer.forward(expected)
    assert_float32_close(net.forward(x), expected)
    np.testing.assert_array_equal(x, original)


def test_fast_conv_in_blocks_of_rows_matches_one_block(monkeypatch):
    from digit_recognizer.nn.fast import conv
    net = nn.Sequential(nn.Conv2D(3, 5, 3, stride=2, padding=1))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3, 9, 8)).astype(np.float32)
    g = rng.standard_normal((7, 5, 5, 4)).astype(np.float32)

    def forward_backward():
        net[0].weight.grad = net[0].bias.grad = None
        inferred = net.forward(x)
        return [inferred, net.forward(x, training=True), net.backward(g), net[0].weight.grad, net[0].bias.grad]

    whole = forward_backward()
    # Output 5 x 4 per image; im2col has 27 rows and 4 * 7 columns per output row.
    monkeypatch.setattr(conv, "BLOCK_BYTES", 2 * 27 * 28 * 4)  # blocks of 2 output rows: 2 + 2 + 1
    for a, b in zip(whole, forward_backward()):
        assert_float32_close(a, b)


def test_conv_backward_runs_once_per_forward(engine_path):
    net = nn.Sequential(nn.Conv2D(1, 2, 3))
    x = np.ones((2, 1, 5, 5), np.float32)
    g = np.ones(net.forward(x, training=True).shape, np.float32)
    net.backward(g)
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(g)


def test_backward_without_input_gradient_still_fills_parameter_gradients(engine_path):
    net = small_cnn()
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    g = np.ones((3, 10), np.float32)
    nn.manual_seed(0)
    net.forward(x, training=True)
    full = net.backward(g)
    grads = [p.grad.copy() for p in net.parameters()]
    for p in net.parameters():
        p.grad = None
    nn.manual_seed(0)
    net.forward(x, training=True)
    assert full.shape == x.shape and net.backward(g, input_grad=False) is None
    for p, expected in zip(net.parameters(), grads):
        np.testing.assert_array_equal(p.grad, expected)


def test_gradients_accumulate_until_zero_grad(engine_path):
    net = nn.Sequential(nn.Dense(3, 2))
    x, g = np.ones((1, 3), np.float32), np.ones((1, 2), np.float32)
    net.forward(x, training=True)
    net.backward(g)
    net.backward(g)
    np.testing.assert_array_equal(net[0].weight.grad, 2 * np.ones((2, 3)))
    nn.SGD(net.parameters(), lr=0.1).zero_grad()
    assert net[0].weight.grad is None


def test_maxpool_routes_ties_to_the_first_maximum():
    pool = nn.MaxPool2D(2)
    x = np.zeros((1, 1, 2, 4), np.float32)
    x[0, 0, 1, 2] = x[0, 0, 1, 3] = 1.0
    pool.forward(x, training=True)
    dx = pool.backward(np.ones((1, 1, 1, 2), np.float32))
    np.testing.assert_array_equal(dx[0, 0], [[1, 0, 0, 0], [0, 0, 1, 0]])


def test_dropout_is_seeded_scaled_and_off_at_inference():
    drop = nn.Dropout(0.25)
    x = np.ones((200, 50), np.float32)
    assert drop.forward(x) is x
    nn.manual_seed(3)
    a = drop.forward(x, training=True)
    nn.manual_seed(3)
    b = drop.forward(x, training=True)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0.0, np.float32(1 / 0.75)}
    assert abs((a == 0).mean() - 0.25) < 0.02
    np.testing.assert_array_equal(drop.backward(x), a)


def test_seeding_and_rng_state_round_trip():
    nn.manual_seed(42)
    w1 = nn.Dense(5, 5).weight.data
    state = json.loads(json.dumps(nn.get_rng_state()))
    w2 = nn.Dense(5, 5).weight.data
    nn.set_rng_state(state)
    np.testing.assert_array_equal(nn.Dense(5, 5).weight.data, w2)
    nn.manual_seed(42)
    np.testing.assert_array_equal(nn.Dense(5, 5).weight.data, w1)
    explicit = nn.Dense(5, 5, rng=np.random.default_rng(42)).weight.data
    np.testing.assert_array_equal(explicit, nn.Dense(5, 5, rng=np.random.default_rng(42)).weight.data)
    with pytest.raises(ValueError):
        nn.set_rng_state({"bad": 1})


@pytest.mark.parametrize("init, std", [("he", np.sqrt(2 / 400)), ("glorot", np.sqrt(2 / 600))])
def test_initialisers_have_the_right_scale(init, std):
    w = nn.Dense(400, 200, init=init, rng=np.random.default_rng(0)).weight.data
    assert abs(w.std() / std - 1) < 0.02 and abs(w.mean()) < 0.01 * std * 10


def test_optimizer_state_dict_is_json_and_arrays():
    net = small_cnn()
    opt = nn.AdamW(net.parameters(), lr=1e-3)
    for p in net.parameters():
        p.grad = np.ones_like(p.data)
    opt.step()
    state = opt.state_dict()
    scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    assert json.loads(json.dumps(scalars)) == {**scalars, "betas": list(scalars["betas"])}
    assert len(arrays) == 2 * len(net.parameters()) and "exp_avg.0" in arrays
    with pytest.raises(ValueError, match="AdamW"):
        nn.SGD(net.parameters(), lr=0.1).load_state_dict(state)


def test_schedules():
    assert nn.StepLR(1.0, 10, 0.5)(25) == 0.25
    cos = nn.CosineLR(1.0, 100, min_lr=0.1)
    assert cos(0) == 1.0 and abs(cos(50) - 0.55) < 1e-12 and cos(100) == cos(500) == pytest.approx(0.1)
    one = nn.OneCycleLR(1.0, 100)
    lrs = [one(s) for s in range(100)]
    assert lrs[0] == pytest.approx(1 / 25) and max(lrs) == pytest.approx(1.0) and lrs[-1] == pytest.approx(1 / 25e4)
    warm = nn.LinearWarmup(nn.CosineLR(1.0, 10), warmup_steps=5)
    assert [warm(s) for s in range(6)] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_sgd_learns_a_tiny_problem():
    """End to end: a 2-layer MLP fits XOR-like data, so the pieces compose into learning."""
    nn.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 2)).astype(np.float32)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)
    net = nn.Sequential(nn.Dense(2, 32), nn.ReLU(), nn.Dense(32, 2))
    opt = nn.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(300):
        loss, g = nn.softmax_cross_entropy(net.forward(x, training=True), y)
        net.backward(g, input_grad=False)
        opt.step()
        opt.zero_grad()
    assert (net.forward(x).argmax(1) == y).mean() > 0.95


def test_fixed_seed_gives_identical_training_runs():
    def run():
        nn.manual_seed(11)
        net = small_cnn()
        opt = nn.Adam(net.parameters(), lr=1e-2)
        rng = np.random.default_rng(0)
        for _ in range(3):
            x = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
            _, g = nn.softmax_cross_entropy(net.forward(x, training=True), rng.integers(0, 10, 6))
            net.backward(g, input_grad=False)
            opt.step()
            opt.zero_grad()
        return net.state_dict()
    first, second = run(), run()
    assert all(np.array_equal(first[k], second[k]) for k in first)
