"""The web app and REST API: routes, one prediction path with the CLI, errors, limits, concurrency."""

import asyncio
import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from digit_recognizer import modelfile, models, nn  # noqa: E402
from digit_recognizer.cli import main  # noqa: E402
from digit_recognizer.errors import DigitsError  # noqa: E402
from digit_recognizer.serve import app as app_module  # noqa: E402
from digit_recognizer.serve import create_app, inference  # noqa: E402
from digit_recognizer.serve.process import serving  # noqa: E402

LIMIT = 64 * 1024  # a small upload limit keeps the 413 tests cheap


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _drawn_seven(size=280) -> Image.Image:
    """A '7' drawn like on the page: white strokes on black."""
    image = Image.new("L", (size, size), 0)
    s = size / 280
    ImageDraw.Draw(image).line([(70 * s, 60 * s), (210 * s, 60 * s), (120 * s, 230 * s)],
                               fill=255, width=int(18 * s), joint="curve")
    return image


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    nn.manual_seed(0)
    net = models.build(models.ARCHITECTURES["lenet5"])
    metadata = {"spec": models.ARCHITECTURES["lenet5"], "mean": 0.1307, "std": 0.3081,
                "classes": [str(i) for i in range(10)], "dataset": "mnist", "name": "lenet5",
                "metrics": {"split": "test", "accuracy": 0.5}, "version": "test"}
    return modelfile.save(tmp_path_factory.mktemp("model") / "lenet5.safetensors", net, metadata)


@pytest.fixture(scope="module")
def model(model_path):
    return modelfile.load(model_path)


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(model, max_upload_bytes=LIMIT), raise_server_exceptions=False) as c:
        yield c


def _post_file(client, content: bytes, name="digit.png", kind="image/png", **params):
    return client.post("/api/predict", files={"file": (name, content, kind)}, params=params)


def _assert_error(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"] and "\n" not in body["error"]


# ---------------------------------------------------------------- page and information routes

def test_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert '<canvas id="pad"' in html and 'href="/docs"' in html
    assert 'id="clear"' in html and 'id="upload"' in html and 'id="seen"' in html
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert client.get(asset).status_code == 200
    for text in (html, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I)  # nothing fetched from elsewhere


def test_health_and_model_info(client, model):
    assert client.get("/api/health").json()["status"] == "ok"
    info = client.get("/api/model").json()
    assert info["architecture"] == model.metadata["spec"]
    assert info["classes"] == model.classes and info["metrics"] == {"split": "test", "accuracy": 0.5}
    assert info["parameters"] == sum(p.data.size for p in model.net.parameters())
    assert info["version"] == "test"


def test_openapi_documents_both_request_bodies(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert client.get("/docs").status_code == 200


# ---------------------------------------------------------------- predictions

def test_upload_answers_what_the_cli_prints(client, model_path, tmp_path, capsys):
    path = tmp_path / "seven.png"
    _drawn_seven().save(path)
    assert main(["predict", "--model", str(model_path), "--json", str(path)]) == 0
    (cli,) = json.loads(capsys.readouterr().out)
    del cli["path"]

    response = _post_file(client, path.read_bytes())
    assert response.status_code == 200, response.text
    api = response.json()
    assert {k: api[k] for k in cli} == cli  # the same object, plus page extras
    probabilities = api["probabilities"]
    assert len(probabilities) == 10 and abs(sum(probabilities) - 1) < 1e-4
    assert api["digit"] == int(np.argmax(probabilities)) and api["confidence"] == max(probabilities)
    seen = Image.open(io.BytesIO(base64.b64decode(api["image"].split(",", 1)[1])))
    assert seen.size == (28, 28)


def test_a_number_is_read_digit_by_digit(client):
    image = Image.new("L", (300, 140), 0)
    draw = ImageDraw.Draw(image)
    draw.line([(30, 20), (110, 20), (60, 120)], fill=255, width=12)  # 7
    draw.line([(200, 20), (200, 120)], fill=255, width=12)  # 1
    result = _post_file(client, _png(image)).json()
    assert len(result["number"]) == 2 and len(result["digits"]) == 2
    assert result["digit"] == result["digits"][0]["digit"]
    seen = Image.open(io.BytesIO(base64.b64decode(result["image"].split(",", 1)[1])))
    assert seen.size == (56, 28)  # both inputs, side by side


def test_several_lines_come_back_as_lines(client):
    image = Image.new("L", (300, 300), 0)
    draw = ImageDraw.Draw(image)
    draw.line([(110, 20), (110, 110)], fill=255, width=12)  # 1
    draw.line([(60, 170), (60, 270)], fill=255, width=12)  # 1 1 on the line below
    draw.line([(200, 170), (200, 270)], fill=255, width=12)
    result = _post_file(client, _png(image)).json()
    assert [len(line) for line in result["lines"]] == [1, 2] and "number" not in result
    assert len(result["digits"]) == 3


def test_top_k_parameter(client):
    content = _png(_drawn_seven())
    full = _post_file(client, content, top_k=10).json()
    assert sorted(label for label, _ in full["top_k"]) == list(range(10))
    assert [p for _, p in full["top_k"]] == sorted(full["probabilities"], reverse=True)
    assert all(full["probabilities"][label] == p for label, p in full["top_k"])
    assert _post_file(client, content, top_k=1).json()["top_k"] == full["top_k"][:1]
    for bad in (0, 11, "x"):
        _assert_error(_post_file(client, content, top_k=bad), 422)


def test_json_pixels_and_raw_body_go_through_the_same_path(client):
    image = _drawn_seven().resize((28, 28), Image.BILINEAR)
    pixels = np.asarray(image)
    by_upload = _post_file(client, _png(image)).json()
    by_json = client.post("/api/predict", json={"pixels": pixels.tolist()}).json()
    by_floats = client.post("/api/predict", json={"pixels": (pixels / 255.0).tolist()}).json()
    by_body = client.post("/api/predict", content=_png(image), headers={"content-type": "image/png"}).json()
    for other in (by_json, by_floats, by_body):
        assert other["digit"] == by_upload["digit"]
        np.testing.assert_allclose(other["probabilities"], by_upload["probabilities"], atol=1e-3)


# ---------------------------------------------------------------- errors and limits

@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"hello, this is not an image", "not an image"),
    (_png(Image.new("L", (50, 50), 255)), "no digit"),
    (_png(_drawn_seven())[:200], ""),  # a truncated PNG
])
def test_bad_uploads_are_422(client, content, message):
    response = _post_file(client, content)
    _assert_error(response, 422)
    assert message in response.json()["error"].lower()


@pytest.mark.parametrize("body", [
    '{"pixels": [[0, 1], [2, 3]]}',
    '{"pixels": ' + json.dumps([[0] * 28] * 27 + [[0] * 27]) + "}",
    '{"pixels": ' + json.dumps([[300] * 28] * 28) + "}",
    '{"pixels": ' + json.dumps([[-1] * 28] * 28) + "}",
    '{"pixels": ' + json.dumps([["a"] * 28] * 28) + "}",
    '{"pixels": [' + ",".join(["[" + ",".join(["NaN"] * 28) + "]"] * 28) + "]}",
    '{"pixels": null}', '{"image": []}', "[]", "7", '"pixels"', "{", "",
    '{"pixels": ' + "[" * 20000 + "]" * 20000 + "}",
])
def test_bad_json_is_422(client, body):
    _assert_error(client.post("/api/predict", content=body, headers={"content-type": "application/json"}), 422)


def test_wrong_media_type_missing_field_and_routes(client):
    _assert_error(client.post("/api/predict", content=b"abc", headers={"content-type": "text/plain"}), 415)
    _assert_error(client.post("/api/predict"), 415)
    _assert_error(client.post("/api/predict", data={"file": "not a file"}, files={"other": ("a", b"x")}), 422)
    _assert_error(client.post("/api/predict", data={"name": "x"}, files={"other": ("a.png", b"x")}), 422)
    _assert_error(client.post("/api/predict", content=b"--x\r\nbroken",
                              headers={"content-type": "multipart/form-data; boundary=x"}), 422)
    _assert_error(client.get("/api/predict"), 405)
    _assert_error(client.get("/no/such/page"), 404)


def test_upload_over_the_limit_is_413(client):
    big = b"\x89PNG" + bytes(LIMIT)
    _assert_error(_post_file(client, big), 413)
    # Without a Content-Length (chunked), the body is counted as it arrives.
    _assert_error(client.post("/api/predict", content=iter([bytes(LIMIT // 2)] * 3),
                              headers={"content-type": "image/png"}), 413)
    assert _post_file(client, _png(_drawn_seven())).status_code == 200  # and the app is fine


def test_decompression_bomb_is_refused(client):
    bomb = _png(Image.new("1", (9000, 9000), 0))  # 81 megapixels in a few kilobytes
    assert len(bomb) < LIMIT
    _assert_error(_post_file(client, bomb), 422)


# Fuzzing: no input a client can send makes the server fail.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=30) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=1000,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.one_of(json_values, st.fixed_dictionaries({"pixels": json_values})))
@pytest.mark.slow
def test_fuzz_json_never_500(client, document):
    response = client.post("/api/predict", content=json.dumps(document), headers={"content-type": "application/json"})
    assert response.status_code in (200, 422), response.text
    assert response.headers["content-type"] == "application/json"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=2048) | st.binary(max_size=64).map(lambda b: _png(_drawn_seven(28))[:40] + b),
       kind=st.sampled_from(["image/png", "application/octet-stream", "text/plain", "image/jpeg"]))
@pytest.mark.slow
def test_fuzz_uploads_never_500(client, content, kind):
    response = _post_file(client, content, kind=kind)
    assert response.status_code in (200, 422), response.text
    raw = client.post("/api/predict", content=content, headers={"content-type": kind})
    assert raw.status_code in (200, 415, 422), raw.text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
       content=st.binary(max_size=256))
def test_fuzz_content_types_never_500(client, kind, content):
    response = client.post("/api/predict", content=content, headers={"content-type": kind})
    assert 400 <= response.status_code < 500 or response.status_code == 200, response.text


# ---------------------------------------------------------------- concurrency

def test_inference_runs_off_the_event_loop(model, monkeypatch):
    """While a slow prediction runs, the event loop goes on answering other requests."""
    delay = 0.5

    def slow_prediction(model, source, top_k):
        time.sleep(delay)
        return {"digit": 1}

    monkeypatch.setattr(inference, "run_prediction", slow_prediction)
    app = create_app(model)

    async def meanwhile():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            start = time.perf_counter()
            prediction = asyncio.ensure_future(http.post("/api/predict", content=b"x",
                                                         headers={"content-type": "image/png"}))
            await asyncio.sleep(0.05)
            health = [await http.get("/api/health") for _ in range(5)]
            health_done = time.perf_counter() - start
            return await prediction, health, health_done

    prediction, health, health_done = asyncio.run(meanwhile())
    assert prediction.json() == {"digit": 1} and all(h.status_code == 200 for h in health)
    assert health_done < delay / 2


def _sleepy_task(model, source, top_k):
    """A task for worker processes (module level, so they can import it)."""
    started = time.time()
    time.sleep(source)
    return {"pid": os.getpid(), "classes": len(model.classes), "started": started, "ended": time.time()}


def _dying_task(model, source, top_k):
    if source == "die":
        os._exit(1)  # as if killed, or out of memory
    return {"pid": os.getpid()}


@pytest.mark.slow
def test_worker_processes_answer_side_by_side(model):
    predictor = inference.Predictor(model, workers=2, task=_sleepy_task)
    try:
        predictor.start()

        async def two():
            answers = await asyncio.gather(predictor(1.0, 3), predictor(1.0, 3))
            return [json.loads(a) for a in answers]

        answers = asyncio.run(two())
    finally:
        predictor.close()
    # side by side: each task starts before the other one ends (a load-independent check)
    first, second = answers
    assert first["started"] < second["ended"] and second["started"] < first["ended"]
    assert len({a["pid"] for a in answers}) == 2 and os.getpid() not in {a["pid"] for a in answers}
    assert all(a["classes"] == 10 for a in answers)  # each worker holds the model


@pytest.mark.slow
def test_a_dead_worker_is_replaced(model):
    predictor = inference.Predictor(model, workers=1, task=_dying_task)
    try:
        first = json.loads(asyncio.run(predictor("ok", 3)))["pid"]
        os.kill(first, signal.SIGKILL)  # between requests: the next one gets a new worker
        second = json.loads(asyncio.run(predictor("ok", 3)))["pid"]
        assert second != first
        with pytest.raises(DigitsError, match="worker stopped"):  # dies on every try: one clear error
            asyncio.run(predictor("die", 3))
        assert json.loads(asyncio.run(predictor("ok", 3)))["pid"] not in (first, second)
    finally:
        predictor.close()


@pytest.mark.slow
def test_concurrent_requests_get_their_own_answers(model, mnist_test):
    """Many simultaneous predictions, each checked against the same request made alone:
    forward passes in inference mode share one network and no layer state."""
    images = mnist_test[0][:160]
    app = create_app(model)
    with TestClient(app) as alone:
        expected = [alone.post("/api/predict", json={"pixels": im.tolist()}).json()["probabilities"]
                    for im in images]

    async def together():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(*(http.post("/api/predict", json={"pixels": im.tolist()})
                                          for im in images))

    answers = [r.json()["probabilities"] for r in asyncio.run(together())]
    wrong = [i for i, (a, e) in enumerate(zip(answers, expected)) if a != e]
    assert not wrong, f"{len(wrong)} of {len(images)} concurrent answers differ from the answer alone"


# ---------------------------------------------------------------- the real server and the CLI

@pytest.mark.slow
def test_digits_serve_over_a_real_socket(model_path):
    with serving(model_path, workers=2) as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/api/health").json()["status"] == "ok"
            response = http.post("/api/predict", files={"file": ("7.png", _png(_drawn_seven()), "image/png")})
            assert response.status_code == 200 and len(response.json()["probabilities"]) == 10
            # errors raised in a worker process come back as the same one-line JSON errors
            blank = http.post("/api/predict", content=_png(Image.new("L", (64, 64))),
                              headers={"content-type": "image/png"})
            assert blank.status_code == 422 and blank.json() == {"error": "no digit found"}
            corrupt = http.post("/api/predict", content=_png(_drawn_seven())[:200],
                                headers={"content-type": "image/png"})
            assert corrupt.status_code == 422 and "truncated or corrupt" in corrupt.json()["error"]
            too_big = http.post("/api/predict", content=bytes(app_module.MAX_UPLOAD_BYTES + 1),
                                headers={"content-type": "image/png"})
            assert too_big.status_code == 413 and "limit" in too_big.json()["error"]
        port = server.url.rsplit(":", 1)[1]
        busy = subprocess.run([sys.executable, "-m", "digit_recognizer", "serve", "--model", str(model_path),
                               "--port", port], capture_output=True, text=True, timeout=60)
        assert busy.returncode == 1
        assert busy.stderr.startswith("digits: error: cannot listen on") and "Traceback" not in busy.stderr


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.slow
def test_digits_serve_answers_concurrent_clients_like_the_app_in_process(model, model_path, mnist_test, workers):
    images = mnist_test[0][:40]
    with TestClient(create_app(model)) as alone:
        expected = [alone.post("/api/predict", json={"pixels": im.tolist()}).json() for im in images]

    async def together(url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            return await asyncio.gather(*(http.post("/api/predict", json={"pixels": im.tolist()})
                                          for im in images))

    with serving(model_path, workers=workers) as server:
        answers = asyncio.run(together(server.url))
    assert [a.json() for a in answers] == expected


@pytest.mark.slow
def test_digits_serve_with_a_bad_model_file(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04 a pickle")
    with pytest.raises(DigitsError, match="pickle"):
        with serving(junk, timeout=60):
            pass
