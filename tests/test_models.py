"""The model zoo and specs: shapes, TOML files, clear errors for bad specs."""

import numpy as np
import pytest

from digit_recognizer import models, nn
from digit_recognizer.errors import DigitsError


@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
def test_architectures_map_a_batch_to_ten_logits(name):
    net = models.build(models.ARCHITECTURES[name])
    out = net.forward(np.zeros((3, 1, 28, 28), np.float32))
    assert out.shape == (3, 10)


def test_mlp_and_lenet5_have_the_classic_sizes():
    mlp = models.build(models.ARCHITECTURES["mlp"])
    assert [p.shape for p in mlp.parameters()] == [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)]
    lenet = models.build(models.ARCHITECTURES["lenet5"])
    assert sum(p.data.size for p in lenet.parameters()) == 61706  # LeNet-5 with padding 2, ReLU


def test_cnn_has_batch_norm_and_dropout():
    types = {layer["type"] for layer in models.ARCHITECTURES["cnn"]}
    assert {"BatchNorm2D", "Dropout", "Conv2D"} <= types


def test_toml_spec_infers_input_sizes(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(
        '[[layers]]\ntype = "Conv2D"\nout_channels = 4\nkernel_size = 3\npadding = 1\n'
        '[[layers]]\ntype = "MaxPool2D"\nkernel_size = 2\n'
        '[[layers]]\ntype = "BatchNorm2D"\n'
        '[[layers]]\ntype = "ReLU"\n'
        '[[layers]]\ntype = "Flatten"\n'
        '[[layers]]\ntype = "Dense"\nout_features = 10\n'
    )
    name, spec = models.get_spec(str(path))
    assert name == "tiny"
    resolved = models.resolve(spec)
    assert resolved[0]["in_channels"] == 1
    assert resolved[2]["num_features"] == 4
    assert resolved[5]["in_features"] == 4 * 14 * 14
    assert models.build(spec).forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


def test_build_is_reproducible_under_a_seed():
    nn.manual_seed(3)
    a = models.build(models.ARCHITECTURES["lenet5"]).state_dict()
    nn.manual_seed(3)
    b = models.build(models.ARCHITECTURES["lenet5"]).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("text, message", [
    ('[[layers]]\ntype = "Conv3D"\n', "unknown type 'Conv3D'"),
    ('[[layers]]\ntype = "Flatten"\n[[layers]]\ntype = "Dense"\nout_features = 10\n'
     '[[layers]]\ntype = "Softmax"\n', "Softmax is not allowed"),
    ('[[layers]]\ntype = "Flatten"\n[[layers]]\ntype = "Dense"\nout_features = 7\n', "10 class scores"),
    ('[[layers]]\ntype = "Flatten"\n[[layers]]\ntype = "Dense"\nin_features = 100\nout_features = 10\n',
     "layer 1 (Dense) does not fit"),
    ('[[layers]]\ntype = "Flatten"\n[[layers]]\ntype = "Dense"\nout_features = 10\nunits = 3\n',
     "layer 1 (Dense): unknown argument 'units'; Dense takes in_features, out_features, init"),
    ('[[layers]]\ntype = "Flatten"\n[[layers]]\ntype = "Dense"\n', "layer 1 (Dense): missing out_features"),
    ('[[layers]]\ntype = "Conv2D"\nout_channels = 4\nkernel_size = 3\n[[layers]]\ntype = "Dense"\nout_features = 10\n',
     "layer 1 (Dense) needs a flat input, but its input has shape (4, 26, 26) per image; add a Flatten layer before it"),
    ('[[layers]]\ntype = "Conv2D"\nout_channels = 4\nkernel_size = 3\npadding = "same"\n',
     "layer 0 (Conv2D): bad arguments"),
    ('layers = 3\n', "[[layers]] array"),
    ('[[layers]\n', "cannot read model spec"),
])
def test_bad_specs_are_refused_with_a_clear_message(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DigitsError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        models.build(models.load_spec(path))


def test_unknown_model_name():
    with pytest.raises(DigitsError, match="unknown model 'resnet'"):
        models.get_spec("resnet")
    with pytest.raises(DigitsError, match="no such model spec file"):
        models.get_spec("missing.toml")
