"""`digits explain`: the figure is written for an image file, through the one preprocessing path."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digit_recognizer import cli, explain, models, modelfile, nn, preprocess

# Average pooling: a real image's flat black background makes max-pooling windows tie, and at a
# tie the gradient (a subgradient) differs from a one-sided finite difference.
SPEC = [{"type": "Conv2D", "out_channels": 6, "kernel_size": 5, "padding": 2}, {"type": "BatchNorm2D"},
        {"type": "ReLU"}, {"type": "AvgPool2D", "kernel_size": 2}, {"type": "Flatten"}, {"type": "Dense", "out_features": 10}]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    nn.manual_seed(3)
    spec = models.resolve(SPEC)
    path = tmp_path_factory.mktemp("model") / "small-cnn.safetensors"
    modelfile.save(path, models.build(spec), {"spec": spec, "mean": 0.1307, "std": 0.3081, "name": "small-cnn",
                                              "classes": [str(d) for d in range(10)], "dataset": "mnist"})
    return path


@pytest.fixture(scope="module")
def seven(tmp_path_factory):
    """A black '7' drawn on white paper, as a photo or a scan would be."""
    image = Image.new("L", (160, 200), 255)
    ImageDraw.Draw(image).line([(30, 30), (130, 30), (70, 170)], fill=0, width=12)
    path = tmp_path_factory.mktemp("images") / "seven.png"
    image.save(path)
    return path


@pytest.mark.slow
def test_writes_the_figure_and_names_the_prediction(capsys, model_path, seven, tmp_path):
    out = tmp_path / "figures" / "seven-explained.png"
    assert cli.main(["explain", str(seven), "--model", str(model_path), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(out) as figure:
        assert figure.width > 800 and figure.height > 500
    model = modelfile.load(model_path)
    image = preprocess.to_mnist(preprocess.load_image(seven))
    predicted = int(model.predict(image)[0])
    assert stdout.startswith(f"{seven}: {predicted} (") and f"figure: {out}" in stdout


@pytest.mark.slow
def test_saliency_of_the_real_pipeline_matches_finite_differences(model_path, seven):
    model = modelfile.load(model_path)
    model.net.astype(np.float64)
    image = preprocess.to_mnist(preprocess.load_image(seven)).astype(np.float64)
    result = explain.explain(model, image)
    c = result["predicted"]

    def score(batch):  # z_c of [0, 1] images, through the model's own normalisation
        return explain.logits(model.net, ((batch - model.mean) / model.std)[:, None])[:, c]

    eps = 1e-6  # small: a larger step crosses ReLU kinks at the stroke's edges
    eye = np.eye(784).reshape(-1, 28, 28)
    numeric = ((score(image + eps * eye) - score(image - eps * eye)) / (2 * eps)).reshape(28, 28)
    np.testing.assert_allclose(result["saliency"], np.abs(numeric), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("make, argv_tail, message", [
    (lambda d: d / "missing.png", [], "missing.png: no such file"),
    (lambda d: Image.new("L", (50, 50), 255).save(d / "blank.png") or d / "blank.png", [], "blank.png: no digit found"),
    (None, ["--out", "figure.xyz"], "cannot save a figure"),
])
def test_bad_input_is_a_one_line_error(capsys, model_path, seven, tmp_path, make, argv_tail, message):
    image = make(tmp_path) if make else seven
    code = cli.main(["explain", str(image), "--model", str(model_path), *argv_tail])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("digits: error:") and message in err and err.count("\n") == 1
