"""POST /api/explain: the inside view agrees with /api/predict and with the engine's own passes."""

import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from digit_recognizer import explain, models, modelfile, nn, preprocess  # noqa: E402
from digit_recognizer.serve import create_app, pictures  # noqa: E402


def _model(name):
    nn.manual_seed(1)
    spec = models.resolve(models.ARCHITECTURES[name])
    return modelfile.Model(models.build(spec), {"spec": spec, "mean": 0.1307, "std": 0.3081, "name": name,
                                                "classes": [str(i) for i in range(10)]})


def seven_png() -> bytes:
    """A 7 drawn as the page sends it: white strokes on black, 112x112."""
    image = Image.new("L", (112, 112), 0)
    ImageDraw.Draw(image).line([(28, 24), (84, 24), (48, 92)], fill=255, width=7)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _picture(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


@pytest.fixture(scope="module", params=["lenet5", "mlp"])
def served(request):
    model = _model(request.param)
    with TestClient(create_app(model)) as client:
        yield model, client


def test_explain_reads_as_predict_and_shows_every_layer(served):
    model, client = served
    headers = {"content-type": "image/png"}
    predicted = client.post("/api/predict", content=seven_png(), headers=headers).json()
    answer = client.post("/api/explain", content=seven_png(), headers=headers)
    assert answer.status_code == 200
    inside = answer.json()
    for key in ("digit", "confidence", "top_k", "probabilities", "image"):
        assert inside[key] == predicted[key]

    digit = preprocess.extract(seven_png()).digits[0]
    x = ((digit - 0.1307) / 0.3081)[None, None].astype(np.float32)
    outputs = explain.layer_outputs(model.net, x)
    assert [layer["type"] for layer in inside["layers"]] == [type(layer).__name__ for layer in model.net.layers]
    for view, (layer, output) in zip(inside["layers"], outputs):
        assert view["shape"] == list(output.shape[1:])
        if output.ndim == 4:  # feature maps: one tile per channel, in a grid
            rows, columns = pictures.grid_shape(output.shape[1])
            h, w = output.shape[2:]
            assert _picture(view["maps"]).size == (columns * (w + 1) - 1, rows * (h + 1) - 1)
        else:
            np.testing.assert_allclose(view["values"], output[0], atol=1e-4, rtol=1e-4)
    assert inside["layers"][-1]["role"] == "logits"
    probabilities = nn.softmax(outputs[-1][1])[0]
    np.testing.assert_allclose(inside["probabilities"], probabilities, atol=1e-4)
    assert inside["explained"]["digit"] == int(np.argmax(probabilities)) == inside["digit"]

    assert [step["name"] for step in inside["steps"]] == [name for name, _ in preprocess.step_images(
        preprocess.extract(seven_png()))]
    assert _picture(inside["input"]).size == (28, 28)
    assert _picture(inside["saliency"]).size == (28, 28)


def test_explain_refuses_what_predict_refuses(served):
    _, client = served
    blank = io.BytesIO()
    Image.new("L", (64, 64), 0).save(blank, "PNG")
    answer = client.post("/api/explain", content=blank.getvalue(), headers={"content-type": "image/png"})
    assert answer.status_code == 422 and answer.json() == {"error": "no digit found"}
    assert client.post("/api/explain", content=b"x", headers={"content-type": "text/plain"}).status_code == 415


def test_explain_is_documented(served):
    _, client = served
    schema = client.get("/openapi.json").json()
    route = schema["paths"]["/api/explain"]["post"]
    assert "multipart/form-data" in route["requestBody"]["content"]
    assert route["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Explanation")
    assert {"steps", "saliency", "layers"} <= set(schema["components"]["schemas"]["Explanation"]["properties"])


def test_tiles_and_colours():
    assert [pictures.grid_shape(n) for n in (1, 6, 16, 32, 37, 64, 128)] == \
        [(1, 1), (1, 6), (2, 8), (4, 8), (5, 9), (4, 16), (8, 16)]
    maps = np.zeros((16, 3, 2), np.float32)
    maps[9, 1, 1] = 2.0
    image = np.asarray(pictures.tiles(maps))
    assert image.shape == (2 * 4 - 1, 8 * 3 - 1, 3)
    assert (image[4 + 1, 3 + 1] == 255).all()  # tile 9 is the second of the second row: full white
    assert (image[3, :] == pictures.GAP_SHADE).all()  # the line between the rows
    assert (image[image != pictures.GAP_SHADE] == 0).sum() == image[image != pictures.GAP_SHADE].size - 3
    signed = pictures.colour(np.array([[-1.0, 0.0, 0.5]]))
    assert signed[0, 0, 2] > signed[0, 0, 0]  # negative: blue
    assert (signed[0, 1] == 0).all()  # zero: black
    assert signed[0, 2, 0] > signed[0, 2, 2]  # positive: orange


def test_training_can_be_turned_off():
    with TestClient(create_app(_model("mlp"), training=False)) as client:
        refused = client.post("/api/train", json={})
        assert refused.status_code == 403 and "--no-training" in refused.json()["error"]
        assert client.get("/api/train").json()["enabled"] is False


def test_explain_chooses_the_digit_of_a_number(served):
    _, client = served
    image = Image.new("L", (224, 112), 0)
    draw = ImageDraw.Draw(image)
    draw.line([(40, 20), (40, 92)], fill=255, width=7)  # a 1 ...
    draw.line([(130, 24), (190, 24), (150, 92)], fill=255, width=7)  # ... and a 7
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    ask = {"content": buffer.getvalue(), "headers": {"content-type": "image/png"}}
    first = client.post("/api/explain", **ask).json()
    second = client.post("/api/explain?position=1", **ask).json()
    beyond = client.post("/api/explain?position=5", **ask).json()
    assert len(first["digits"]) == 2 and first["steps"] == second["steps"]
    assert first["explained"]["position"] == 0 and second["explained"]["position"] == beyond["explained"]["position"] == 1
    assert first["input"] != second["input"] and second["input"] == beyond["input"]
    assert [s["label"] for s in first["steps"]][-2:] == ["28x28 input 1 of 2", "28x28 input 2 of 2"]
    assert client.post("/api/explain?position=-1", **ask).status_code == 422


@pytest.mark.parametrize("name", ["mlp", "lenet5", "small-cnn", "cnn"])
def test_every_architecture_offered_builds_and_shows_its_first_layer(name):
    from digit_recognizer.serve import learning_worker

    net = models.build(models.resolve(learning_worker.ARCHITECTURES[name]))
    first = next(layer for layer in net.layers if layer.parameters())
    shown = min(len(first.weight.data), learning_worker.MAX_FILTERS)
    side = first.weight.data.shape[-1] if first.weight.data.ndim == 4 else 28
    rows, columns = pictures.grid_shape(shown)
    picture = _picture(learning_worker.first_layer_picture(net))
    assert picture.size == (columns * (side + 1) - 1, rows * (side + 1) - 1)
