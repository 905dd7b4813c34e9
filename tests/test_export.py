"""ONNX export: the graph, run by onnxruntime, computes what the engine computes."""

import json

import numpy as np
import pytest

from digit_recognizer import export, modelfile, models, nn
from digit_recognizer.cli import main
from digit_recognizer.errors import DigitsError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

MEAN, STD = 0.1307, 0.3081

# Every layer type the exporter converts, with strides, padding and both batch norms.
EVERY_LAYER = [
    {"type": "Conv2D", "out_channels": 6, "kernel_size": 3, "padding": 1},
    {"type": "BatchNorm2D"},
    {"type": "LeakyReLU", "negative_slope": 0.1},
    {"type": "AvgPool2D", "kernel_size": 3, "stride": 2},
    {"type": "Conv2D", "out_channels": 8, "kernel_size": 3, "stride": 2},
    {"type": "Tanh"},
    {"type": "MaxPool2D", "kernel_size": 2, "stride": 1},
    {"type": "Sigmoid"},
    {"type": "GlobalAvgPool2D"},
    {"type": "Dense", "out_features": 32},
    {"type": "BatchNorm1D"},
    {"type": "GELU"},
    {"type": "Dropout", "p": 0.5},
    {"type": "Dense", "out_features": 10},
]


def _random_model(spec, seed=0):
    """A freshly built network with random batch-norm statistics (so their conversion is exercised)."""
    nn.manual_seed(seed)
    net = models.build(spec)
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if isinstance(layer, (nn.BatchNorm1D, nn.BatchNorm2D)):
            c = layer.num_features
            layer.weight.data[...] = rng.uniform(0.5, 1.5, c)
            layer.bias.data[...] = rng.normal(0, 0.2, c)
            layer.running_mean[...] = rng.normal(0, 0.3, c)
            layer.running_var[...] = rng.uniform(0.5, 2.0, c)
    metadata = {"spec": models.resolve(spec), "mean": MEAN, "std": STD,
                "classes": [str(i) for i in range(10)], "dataset": "mnist", "name": "test"}
    return modelfile.Model(net, metadata)


def _run_onnx(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {export.INPUT: x})))


def _images(mnist_test, n=1000):
    images, labels = mnist_test
    return (images[:n].astype(np.float32) / 255.0)[:, None], labels[:n]


def _assert_agrees(model, proto, x):
    engine = model.logits(x)
    out = _run_onnx(proto, x)
    assert out["logits"].shape == engine.shape
    assert np.abs(out["logits"] - engine).max() <= 1e-4
    np.testing.assert_array_equal(out["logits"].argmax(1), engine.argmax(1))
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(x), atol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "lenet5", "cnn"])
@pytest.mark.slow
def test_architectures_agree_with_engine_on_real_mnist(name, mnist_test):
    model = _random_model(models.ARCHITECTURES[name])
    x, _ = _images(mnist_test)
    _assert_agrees(model, export.to_onnx(model), x)


def test_every_supported_layer_agrees(mnist_test):
    model = _random_model(EVERY_LAYER, seed=3)
    x, _ = _images(mnist_test, 200)
    proto = export.to_onnx(model)
    ops = {node.op_type for node in proto.graph.node}
    assert {"Conv", "BatchNormalization", "LeakyRelu", "AveragePool", "MaxPool", "Tanh", "Sigmoid",
            "GlobalAveragePool", "Gemm", "Gelu", "Softmax"} <= ops
    assert "Dropout" not in ops
    _assert_agrees(model, proto, x)


@pytest.fixture(scope="module")
def shipped_model():
    path = modelfile.default_model_path()
    if not path.exists():
        pytest.skip("the shipped model is not built yet")
    return modelfile.load(path)


@pytest.mark.slow
def test_shipped_model_agrees_and_is_accurate(shipped_model, mnist_test, tmp_path):
    model = shipped_model
    out = tmp_path / "model.onnx"
    assert main(["export", "--format", "onnx", "--out", str(out)]) == 0
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    x, labels = _images(mnist_test)
    _assert_agrees(model, proto, x)
    accuracy = (_run_onnx(proto, x)["logits"].argmax(1) == labels).mean()
    assert accuracy > 0.97


def test_readme_recipe_preprocess_then_onnxruntime(shipped_model, tmp_path):
    """A user's image through preprocess.to_mnist and the ONNX file reads as `digits predict` reads it."""
    from PIL import Image, ImageDraw

    from digit_recognizer import predict, preprocess

    model = shipped_model
    photo = Image.new("L", (200, 240), 235)  # dark ink on light paper
    ImageDraw.Draw(photo).line([(50, 40), (150, 40), (90, 200)], fill=20, width=14)
    photo.save(tmp_path / "seven.png")

    out = export.export(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(out))
    classes = json.loads(session.get_modelmeta().custom_metadata_map["classes"])
    x = preprocess.to_mnist(tmp_path / "seven.png")[None, None]
    logits, probabilities = session.run(None, {"image": x})
    expected = predict.predict_image(model, tmp_path / "seven.png")
    assert classes[probabilities.argmax()] == str(expected["digit"])
    assert abs(float(probabilities.max()) - expected["confidence"]) < 1e-3


def test_batch_axis_is_dynamic_and_metadata_travels(mnist_test):
    model = _random_model(models.ARCHITECTURES["lenet5"])
    proto = export.to_onnx(model)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    x, _ = _images(mnist_test, 7)
    for batch in (x[:1], x):
        assert _run_onnx(proto, batch)["logits"].shape == (len(batch), 10)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == model.classes
    assert json.loads(props["mean"]) == MEAN and json.loads(props["std"]) == STD
    assert json.loads(props["architecture"]) == model.metadata["spec"]


def test_a_network_ending_in_softmax_outputs_probabilities_only(mnist_test):
    model = _random_model(models.ARCHITECTURES["mlp"])
    model.net.layers.append(nn.Softmax())
    proto = export.to_onnx(model)
    x, _ = _images(mnist_test, 50)
    out = _run_onnx(proto, x)
    assert set(out) == {"probabilities"}
    np.testing.assert_allclose(out["probabilities"], model.logits(x), atol=1e-5)


def test_unsupported_layer_is_a_clear_error():
    class Swish(nn.Layer):
        def forward(self, x, training=False):
            return x / (1 + np.exp(-x))

    model = _random_model(models.ARCHITECTURES["mlp"])
    model.net.layers.insert(2, Swish())
    with pytest.raises(DigitsError, match=r"layer 2 \(Swish\)"):
        export.to_onnx(model)


def test_cli_writes_a_checked_file_and_reports_bad_input(tmp_path, capsys):
    model = _random_model(models.ARCHITECTURES["lenet5"])
    path = model.save(tmp_path / "m.safetensors")
    out = tmp_path / "m.onnx"
    assert main(["export", str(path), "--format", "onnx", "--out", str(out)]) == 0
    onnx.checker.check_model(onnx.load(str(out)))
    assert "wrote" in capsys.readouterr().out

    assert main(["export", str(path), "--out", str(tmp_path / "missing" / "m.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "junk.safetensors").write_bytes(b"not a model at all")
    assert main(["export", str(tmp_path / "junk.safetensors"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("digits: error:") and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["export", str(path), "--format", "tflite", "--out", str(out)])


def test_probabilities_are_calibrated_with_the_temperature_and_keep_the_not_a_digit_class(mnist_test):
    spec = [dict(layer) for layer in models.ARCHITECTURES["lenet5"]]
    spec[-1] = dict(spec[-1], out_features=11)
    nn.manual_seed(0)
    metadata = {"spec": models.resolve(spec, n_classes=11), "mean": MEAN, "std": STD, "temperature": 1.7,
                "classes": [str(i) for i in range(10)] + ["not a digit"], "dataset": "mnist"}
    model = modelfile.Model(models.build(spec, n_classes=11), metadata)
    proto = export.to_onnx(model)
    x, _ = _images(mnist_test, 200)
    _assert_agrees(model, proto, x)  # probabilities as predict_proba: softmax(logits / 1.7)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"])[-1] == "not a digit" and float(props["temperature"]) == 1.7
