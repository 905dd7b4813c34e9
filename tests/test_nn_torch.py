"""Parity with PyTorch: same weights, same inputs -> same outputs, gradients and optimizer steps.
The networks run on both of the engine's paths, reference and fast (the ``engine_path`` fixture)."""

import numpy as np
import pytest

from digit_recognizer import nn

torch = pytest.importorskip("torch")
F = torch.nn.functional
RTOL = 1e-4


def close(ours, theirs, rtol=RTOL):
    """max |a - b| relative to max |b| (one scale per tensor, as 'agree to 1e-4 relative')."""
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.shape == theirs.shape
    scale = max(np.abs(theirs).max(), 1e-12)
    err = np.abs(ours - theirs).max() / scale
    assert err < rtol, f"relative error {err:.2e}"


def to_torch(layer):
    """The torch module equivalent to one of our layers (weights copied)."""
    cfg = layer.config()
    name = type(layer).__name__
    if name == "Dense":
        m = torch.nn.Linear(cfg["in_features"], cfg["out_features"])
    elif name == "Conv2D":
        m = torch.nn.Conv2d(cfg["in_channels"], cfg["out_channels"], cfg["kernel_size"],
                            stride=cfg["stride"], padding=cfg["padding"])
    elif name in ("BatchNorm1D", "BatchNorm2D"):
        m = getattr(torch.nn, name.replace("D", "d"))(cfg["num_features"], eps=cfg["eps"], momentum=cfg["momentum"])
    elif name == "MaxPool2D":
        m = torch.nn.MaxPool2d(cfg["kernel_size"], cfg["stride"])
    elif name == "AvgPool2D":
        m = torch.nn.AvgPool2d(cfg["kernel_size"], cfg["stride"])
    elif name == "GlobalAvgPool2D":
        m = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    elif name == "GELU":
        m = torch.nn.GELU(approximate="tanh")
    elif name == "Softmax":
        m = torch.nn.Softmax(dim=1)
    elif name == "LeakyReLU":
        m = torch.nn.LeakyReLU(cfg["negative_slope"])
    else:
        m = getattr(torch.nn, name)(**cfg)
    with torch.no_grad():
        for key, value in layer.state_dict().items():
            getattr(m, key).copy_(torch.from_numpy(value))
    return m


def to_torch_net(net):
    return torch.nn.Sequential(*[to_torch(layer) for layer in net])


# BatchNorm follows activations: straight after a bias it makes that bias's gradient zero
# (rounding noise in both engines), which no relative tolerance can compare.
NETWORKS = {
    "mlp": (lambda: nn.Sequential(nn.Flatten(), nn.Dense(64, 32), nn.ReLU(), nn.Dense(32, 16), nn.Tanh(),
                                  nn.Dense(16, 10)), (8, 1, 8, 8)),
    "mlp-bn": (lambda: nn.Sequential(nn.Dense(20, 16), nn.Sigmoid(), nn.BatchNorm1D(16), nn.Dense(16, 5),
                                     nn.Softmax()), (6, 20)),
    "lenet": (lambda: nn.Sequential(nn.Conv2D(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2D(2),
                                    nn.Conv2D(6, 16, 5), nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(),
                                    nn.Dense(16 * 5 * 5, 120), nn.ReLU(), nn.Dense(120, 84), nn.ReLU(),
                                    nn.Dense(84, 10)), (4, 1, 28, 28)),
    "cnn-bn": (lambda: nn.Sequential(nn.Conv2D(3, 8, 3, stride=2, padding=1), nn.LeakyReLU(0.05), nn.BatchNorm2D(8),
                                     nn.Conv2D(8, 12, 3, padding=1), nn.GELU(), nn.MaxPool2D(3, stride=2),
                                     nn.AvgPool2D(2), nn.Conv2D(12, 10, 1), nn.GlobalAvgPool2D()), (5, 3, 17, 15)),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_forward_and_gradients_match_torch(engine_path, name):
    build, shape = NETWORKS[name]
    nn.manual_seed(0)
    net = build()
    tnet = to_torch_net(net)
    rng = np.random.default_rng(0)
    for p in net.parameters():  # non-trivial BN affine parameters and biases too
        p.data[...] += 0.1 * rng.standard_normal(p.data.shape).astype(np.float32)
    tnet = to_torch_net(net)
    x = rng.standard_normal(shape).astype(np.float32)
    r = rng.standard_normal(net.forward(x).shape).astype(np.float32)

    y = net.forward(x, training=True)
    dx = net.backward(r)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = tnet(xt)
    (yt * torch.from_numpy(r)).sum().backward()

    assert y.dtype == np.float32 and dx.dtype == np.float32
    close(y, yt)
    close(dx, xt.grad)
    tparams = list(tnet.parameters())
    assert len(tparams) == len(net.parameters())
    for p, tp in zip(net.parameters(), tparams):
        assert p.grad.dtype == np.float32
        close(p.grad, tp.grad)

    # Running statistics after the training pass, then inference with them.
    for key, value in tnet.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            close(net.state_dict()[key], value)
    tnet.eval()
    close(net.forward(x), tnet(xt))


def test_state_dict_keys_and_loading_from_torch(engine_path):
    build, shape = NETWORKS["cnn-bn"]
    net = build()
    tnet = to_torch_net(build())  # different random weights
    tstate = {k: v.numpy() for k, v in tnet.state_dict().items()}
    assert set(net.state_dict()) == {k for k in tstate if not k.endswith("num_batches_tracked")}
    net.load_state_dict(tstate)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    tnet.eval()
    close(net.forward(x), tnet(torch.from_numpy(x)))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_matches_torch(smoothing):
    rng = np.random.default_rng(2)
    logits = (rng.standard_normal((16, 10)) * 5).astype(np.float32)
    y = rng.integers(0, 10, 16)
    loss, grad = nn.softmax_cross_entropy(logits, y, label_smoothing=smoothing)
    lt = torch.from_numpy(logits).requires_grad_(True)
    tloss = F.cross_entropy(lt, torch.from_numpy(y), label_smoothing=smoothing)
    tloss.backward()
    assert abs(loss - tloss.item()) < RTOL * abs(tloss.item())
    close(grad, lt.grad)


def test_mse_matches_torch():
    rng = np.random.default_rng(3)
    pred, target = rng.standard_normal((2, 2, 7, 8)).astype(np.float32), rng.standard_normal((2, 2, 7, 8))
    loss, grad = nn.mse_loss(pred, target)
    pt = torch.from_numpy(pred).requires_grad_(True)
    tloss = F.mse_loss(pt, torch.from_numpy(target.astype(np.float32)))
    tloss.backward()
    assert abs(loss - tloss.item()) < RTOL * tloss.item()
    close(grad, pt.grad)


OPTIMIZERS = [
    ("SGD", dict(lr=0.1), dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
     dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.5, weight_decay=1e-3), dict(lr=0.05, momentum=0.5, weight_decay=1e-3)),
    ("Adam", dict(lr=1e-2), dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
     dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=1e-2), dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.3), dict(lr=1e-2, weight_decay=0.3)),
    ("RMSprop", dict(lr=1e-2), dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, alpha=0.9, momentum=0.8, weight_decay=1e-2),
     dict(lr=1e-2, alpha=0.9, momentum=0.8, weight_decay=1e-2)),
]


@pytest.mark.parametrize("name, ours_kw, torch_kw", OPTIMIZERS, ids=lambda v: v if isinstance(v, str) else "")
def test_optimizer_matches_torch_over_10_steps(name, ours_kw, torch_kw):
    rng = np.random.default_rng(5)
    shapes = [(4, 3), (3,), (2, 2, 3, 3)]
    params = [nn.Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = getattr(nn, name)(params, **ours_kw)
    topt = getattr(torch.optim, name)(tparams, **torch_kw)
    for step in range(10):
        if step == 5:  # a save/restore round trip half way must not change the trajectory
            state = opt.state_dict()
            opt = getattr(nn, name)(params, **ours_kw)
            opt.load_state_dict(state)
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for p, tp, g in zip(params, tparams, grads):
            p.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        opt.zero_grad()
        assert all(p.grad is None for p in params)
    for p, tp in zip(params, tparams):
        close(p.data, tp, rtol=1e-5)


def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(6)
    grads = [rng.standard_normal(s).astype(np.float32) for s in [(5, 4), (4,)]]
    params = [nn.Parameter(np.zeros_like(g)) for g in grads]
    tparams = [torch.zeros(g.shape, requires_grad=True) for g in grads]
    for p, tp, g in zip(params, tparams, grads):
        p.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())
    total = nn.clip_grad_norm(params, 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, 1.0)
    assert abs(total - ttotal.item()) < 1e-5 * ttotal.item()
    for p, tp in zip(params, tparams):
        close(p.grad, tp.grad)


def torch_lrs(make_scheduler, steps, lr=0.1, momentum=0.9):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=momentum)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs)


# CosineLR stays at min_lr after total_steps where torch's restarts, so only the first 31 steps compare.
@pytest.mark.parametrize("ours, theirs, steps", [
    (nn.StepLR(0.1, step_size=7, gamma=0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 7, gamma=0.5), 40),
    (nn.CosineLR(0.1, total_steps=30, min_lr=0.001),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30, eta_min=0.001), 31),
    (nn.OneCycleLR(0.1, total_steps=40, pct_start=0.25),
     lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=40, pct_start=0.25), 40),
    (nn.LinearWarmup(0.1, warmup_steps=10, start_factor=0.2),
     lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.2, total_iters=10), 40),
], ids=["step", "cosine", "onecycle", "warmup"])
def test_schedules_match_torch(ours, theirs, steps):
    expected = torch_lrs(theirs, steps)
    got = np.array([ours(s) for s in range(steps)])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)
