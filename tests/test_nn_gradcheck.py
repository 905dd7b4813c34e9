"""Finite-difference gradient checks, in float64, for every layer, both losses and a network,
on the reference path and on the fast path (the ``engine_path`` fixture)."""

import numpy as np
import pytest

from digit_recognizer import nn

EPS = 1e-6
TOL = 1e-6


def rel_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


def numeric_grad(f, arr):
    """Central differences of the scalar f() with respect to every element of arr (in place)."""
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat, arr)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + EPS
        plus = f()
        flat[i] = old - EPS
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * EPS)
    return grad


def check_layer(layer, x_shape, seed=0, reseed=False):
    """Loss = sum(forward(x) * R) with a fixed random R, so dL/dy = R. The layer runs in a
    Sequential, which takes the path the switch (nn.use_fast) selects."""
    rng = np.random.default_rng(seed)
    layer.astype(np.float64)
    net = nn.Sequential(layer)
    x = rng.standard_normal(x_shape)

    def forward():
        if reseed:  # Dropout: the same mask at every evaluation
            nn.manual_seed(123)
        return net.forward(x, training=True)

    r = rng.standard_normal(forward().shape)
    loss = lambda: float((forward() * r).sum())  # noqa: E731

    y = forward()
    assert y.dtype == np.float64
    for p in layer.parameters():
        p.grad = None
    dx = net.backward(r)
    assert dx.shape == x.shape and dx.dtype == np.float64
    assert rel_error(dx, numeric_grad(loss, x)) < TOL
    for p in layer.parameters():
        analytic = p.grad.copy()
        assert rel_error(analytic, numeric_grad(loss, p.data)) < TOL


@pytest.mark.parametrize("layer, shape", [
    (nn.Dense(5, 4), (3, 5)),
    (nn.Conv2D(2, 3, 3), (2, 2, 5, 5)),
    (nn.Conv2D(2, 3, 3, stride=2, padding=1), (2, 2, 6, 5)),
    (nn.Conv2D(1, 2, 5, padding=2), (2, 1, 6, 6)),
    (nn.Conv2D(3, 2, 1), (2, 3, 4, 4)),
    (nn.Conv2D(2, 2, 2, stride=3), (1, 2, 7, 8)),
    (nn.MaxPool2D(2), (2, 3, 4, 4)),
    (nn.MaxPool2D(2), (2, 2, 5, 5)),
    (nn.MaxPool2D(3, stride=2), (2, 2, 7, 6)),
    (nn.AvgPool2D(2), (2, 3, 4, 4)),
    (nn.AvgPool2D(3, stride=2), (2, 2, 7, 6)),
    (nn.GlobalAvgPool2D(), (2, 3, 3, 4)),
    (nn.Flatten(), (2, 3, 2, 2)),
    (nn.BatchNorm1D(4), (6, 4)),
    (nn.BatchNorm2D(3), (3, 3, 3, 2)),
    (nn.ReLU(), (4, 7)),
    (nn.LeakyReLU(0.1), (4, 7)),
    (nn.Sigmoid(), (4, 7)),
    (nn.Tanh(), (4, 7)),
    (nn.GELU(), (4, 7)),
    (nn.Softmax(), (4, 7)),
], ids=lambda v: repr(v) if isinstance(v, nn.Layer) else None)
def test_layer_gradients(engine_path, layer, shape):
    check_layer(layer, shape)


def test_dropout_gradients(engine_path):
    check_layer(nn.Dropout(0.4), (5, 6), reseed=True)


def test_batchnorm_with_nontrivial_affine(engine_path):
    bn = nn.BatchNorm2D(3)
    rng = np.random.default_rng(4)
    bn.weight.data[:] = rng.uniform(0.5, 2, 3)
    bn.bias.data[:] = rng.standard_normal(3)
    check_layer(bn, (2, 3, 3, 3))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_gradient(smoothing):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5, 4)) * 3
    y = rng.integers(0, 4, 5)
    loss, grad = nn.softmax_cross_entropy(logits, y, label_smoothing=smoothing)
    assert grad.dtype == np.float64
    num = numeric_grad(lambda: nn.softmax_cross_entropy(logits, y, label_smoothing=smoothing)[0], logits)
    assert rel_error(grad, num) < TOL


def test_mse_gradient():
    rng = np.random.default_rng(2)
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    loss, grad = nn.mse_loss(pred, target)
    assert rel_error(grad, numeric_grad(lambda: nn.mse_loss(pred, target)[0], pred)) < TOL


@pytest.mark.slow
def test_whole_network_gradients(engine_path):
    """A small CNN end to end: conv (stride, padding) -> BN -> pool -> conv -> MLP head -> CE loss."""
    # BatchNorm follows the activations here: straight after a bias it would make that bias's
    # gradient exactly zero, which a relative error cannot check.
    nn.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2D(1, 3, 3, padding=1), nn.LeakyReLU(), nn.BatchNorm2D(3), nn.MaxPool2D(2),
        nn.Conv2D(3, 4, 3, stride=2, padding=1), nn.GELU(), nn.AvgPool2D(2),
        nn.Flatten(), nn.Dense(4, 6), nn.Tanh(), nn.BatchNorm1D(6), nn.Dropout(0.2), nn.Dense(6, 3),
    ).astype(np.float64)
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((4, 1, 8, 8)), np.array([0, 2, 1, 2])

    def loss():
        nn.manual_seed(7)
        return nn.softmax_cross_entropy(net.forward(x, training=True), y, label_smoothing=0.05)[0]

    nn.manual_seed(7)
    _, dlogits = nn.softmax_cross_entropy(net.forward(x, training=True), y, label_smoothing=0.05)
    dx = net.backward(dlogits)
    assert rel_error(dx, numeric_grad(loss, x)) < TOL
    for p in net.parameters():
        assert rel_error(p.grad, numeric_grad(loss, p.data)) < TOL


@pytest.fixture
def split_everything(monkeypatch):
    """The fast path with three threads, every piece of work cut into parts however small
    (such parts normally run whole), convolutions in blocks of one output row."""
    from digit_recognizer.nn import thread_policy
    from digit_recognizer.nn.fast import conv, split
    monkeypatch.setattr(conv, "BLOCK_BYTES", 1)
    monkeypatch.setattr(conv, "MIN_PART_ROWS", 1)
    monkeypatch.setattr(split, "MIN_ROWS", 1)
    monkeypatch.setattr(thread_policy, "PART_FLOPS", 1)
    monkeypatch.setattr(thread_policy, "PART_ELEMENTS", 1)
    with nn.use_fast(True), nn.threads(3):
        yield


@pytest.mark.parametrize("layer, shape", [
    (nn.Dense(5, 4), (3, 5)),
    (nn.Dense(7, 2), (2, 7)),  # dW is wider than long: parts of its columns
    (nn.Conv2D(2, 3, 3), (2, 2, 5, 5)),
    (nn.Conv2D(3, 2, 3, stride=2, padding=1), (2, 3, 6, 5)),
    (nn.MaxPool2D(2), (2, 3, 4, 4)),
    (nn.MaxPool2D(3, stride=2), (2, 3, 7, 6)),
    (nn.ReLU(), (4, 7)),
], ids=lambda v: repr(v) if isinstance(v, nn.Layer) else None)
def test_layer_gradients_split_over_threads(split_everything, layer, shape):
    check_layer(layer, shape)


@pytest.mark.slow
def test_whole_network_gradients_split_over_threads(split_everything):
    test_whole_network_gradients("fast")
