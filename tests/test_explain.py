"""Saliency is the input gradient of the class score: checked against central differences."""

import numpy as np
import pytest

from digit_recognizer import explain, nn, plotting

MEAN, STD = 0.1307, 0.3081


def small_cnn(seed=0):
    """Conv -> BN -> ReLU -> pool -> dropout -> dense, with non-trivial BN running statistics."""
    nn.manual_seed(seed)
    net = nn.Sequential(nn.Conv2D(1, 4, 3, padding=1), nn.BatchNorm2D(4), nn.ReLU(), nn.MaxPool2D(2),
                        nn.Dropout(0.5), nn.Flatten(), nn.Dense(4 * 14 * 14, 16), nn.BatchNorm1D(16),
                        nn.Tanh(), nn.Dense(16, 10))
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if isinstance(layer, (nn.BatchNorm1D, nn.BatchNorm2D)):
            n = layer.num_features
            layer.weight.data[:] = rng.uniform(0.5, 1.5, n)
            layer.bias.data[:] = rng.normal(0, 0.2, n)
            layer.running_mean[:] = rng.normal(0, 0.3, n)
            layer.running_var[:] = rng.uniform(0.5, 2.0, n)
    return net


class TinyModel:
    def __init__(self, net):
        self.net = net
        self.metadata = {"mean": MEAN, "std": STD}
        self.classes = [str(d) for d in range(10)]


def digit_like_image(seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((28, 28), np.float32)
    image[6:22, 12:16] = 0.9  # a vertical stroke, a "1"
    image[6:9, 9:16] = 0.8
    # Noise everywhere, so no two max-pool candidates tie (a tie has no derivative).
    return (image + rng.uniform(0, 0.1, image.shape)).astype(np.float32)


def class_score(net, images01, c):
    """z_c for each image in a batch of [0, 1] images (B, 28, 28), float64."""
    x = ((images01 - MEAN) / STD)[:, None]
    return explain.logits(net, x)[:, c]


@pytest.mark.slow
def test_saliency_matches_central_differences():
    net = small_cnn().astype(np.float64)
    image = digit_like_image().astype(np.float64)
    out = explain.explain(TinyModel(net), image)
    c = out["predicted"]

    # Every pixel at once: a batch of 784 images nudged up, 784 nudged down.
    eps = 1e-5
    eye = np.eye(28 * 28).reshape(-1, 28, 28)
    numeric = (class_score(net, image + eps * eye, c) - class_score(net, image - eps * eye, c)) / (2 * eps)
    numeric = numeric.reshape(28, 28)

    # The saliency is |gradient| w.r.t. the [0, 1] pixels (normalisation included).
    np.testing.assert_allclose(out["saliency"], np.abs(numeric), rtol=1e-4, atol=1e-7)
    assert out["saliency"].max() > 0


def test_input_gradient_is_signed_and_leaves_the_network_unchanged():
    net = small_cnn(1).astype(np.float64)
    x = ((digit_like_image(1) - MEAN) / STD)[None, None].astype(np.float64)
    running = [layer.running_mean.copy() for layer in net.layers if hasattr(layer, "running_mean")]
    before = explain.logits(net, x)

    scores, grad = explain.input_gradient(net, x, 3)

    np.testing.assert_allclose(scores, before)  # inference-mode scores, dropout off
    assert grad.shape == x.shape and (grad < 0).any() and (grad > 0).any()
    eps = 1e-6
    direction = np.random.default_rng(0).normal(size=x.shape)
    numeric = (explain.logits(net, x + eps * direction)[0, 3] - explain.logits(net, x - eps * direction)[0, 3]) / (2 * eps)
    assert np.sum(grad * direction) == pytest.approx(numeric, rel=1e-5)
    # No batch-norm statistics moved and no parameter gradients were left behind.
    after = [layer.running_mean for layer in net.layers if hasattr(layer, "running_mean")]
    assert all(np.array_equal(a, b) for a, b in zip(running, after))
    assert all(p.grad is None for p in net.parameters())


def test_trailing_softmax_is_ignored_for_the_score():
    net = small_cnn(2)
    with_softmax = nn.Sequential(*net.layers, nn.Softmax())
    x = ((digit_like_image() - MEAN) / STD)[None, None]
    np.testing.assert_array_equal(explain.input_gradient(net, x, 4)[1], explain.input_gradient(with_softmax, x, 4)[1])


@pytest.mark.slow
def test_first_layer_activations_and_figure(tmp_path):
    net = small_cnn()
    out = explain.explain(TinyModel(net), digit_like_image())
    assert out["activations"].shape == (4, 28, 28) and (out["activations"] >= 0).all()  # after ReLU
    assert [k for k, _ in out["top_k"]][0] == out["predicted"] and len(out["top_k"]) == 3
    assert sum(p for _, p in out["top_k"]) <= 1.0 + 1e-6
    fig = plotting.plot_explanation(out["image"], out["saliency"], out["activations"], out["top_k"],
                                    [str(d) for d in range(10)])
    path = plotting.save(fig, tmp_path / "explain.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_dense_first_layer_activations_are_units():
    nn.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Dense(784, 32), nn.ReLU(), nn.Dense(32, 10))
    out = explain.explain(TinyModel(net), digit_like_image())
    assert out["activations"].shape == (32,)
    plotting.plot_explanation(out["image"], out["saliency"], out["activations"], out["top_k"], list("0123456789"))
