"""The web app for operations: /metrics, readiness, the API key, graceful shutdown, /docs offline."""

import base64
import hashlib
import io
import os
import re
import signal
import socket
import time

import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")
from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from digit_recognizer import modelfile, models, nn  # noqa: E402
from digit_recognizer.serve import create_app  # noqa: E402
from digit_recognizer.serve.process import serving  # noqa: E402


def _seven_png() -> bytes:
    image = Image.new("L", (140, 140), 0)
    ImageDraw.Draw(image).line([(35, 30), (105, 30), (60, 115)], fill=255, width=9)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


SEVEN = _seven_png()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    nn.manual_seed(0)
    net = models.build(models.ARCHITECTURES["lenet5"])
    metadata = {"spec": models.ARCHITECTURES["lenet5"], "mean": 0.1307, "std": 0.3081,
                "classes": [str(i) for i in range(10)], "dataset": "mnist", "name": "lenet5",
                "metrics": {"split": "test", "accuracy": 0.5}, "version": "test",
                "command": "digits train --out /tmp/tmpabc/run",
                "training": {"model": "lenet5", "epochs": 2, "data_dir": "/tmp/tmpabc/data", "seed": 0}}
    return modelfile.save(tmp_path_factory.mktemp("model") / "lenet5.safetensors", net, metadata)


@pytest.fixture(scope="module")
def model(model_path):
    return modelfile.load(model_path)


def _samples(client) -> dict:
    """The scraped /metrics as {(name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def _predict(client, content=SEVEN, **headers):
    return client.post("/api/predict", content=content, headers={"content-type": "image/png", **headers})


def test_metrics_count_requests_predictions_and_errors(model):
    with TestClient(create_app(model)) as client:
        before = _samples(client)
        assert before[("digits_workers", ())] == 0 and before[("digits_worker_restarts_total", ())] == 0
        answers = [_predict(client).json() for _ in range(3)]
        assert _predict(client, b"not an image").status_code == 422
        assert client.get("/no/such/page").status_code == 404
        assert client.get("/static/app.js").status_code == 200
        after = _samples(client)

    def moved(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("digits_http_requests_total", method="POST", route="/api/predict", status="200") == 3
    assert moved("digits_http_requests_total", method="POST", route="/api/predict", status="422") == 1
    assert moved("digits_http_requests_total", method="GET", route="other", status="404") == 1
    assert moved("digits_http_requests_total", method="GET", route="/static", status="200") == 1
    assert moved("digits_http_request_duration_seconds_count", route="/api/predict") == 4
    assert moved("digits_http_request_duration_seconds_bucket", route="/api/predict", le="+Inf") == 4
    assert moved("digits_http_request_duration_seconds_sum", route="/api/predict") > 0
    digit = str(answers[0]["digit"])
    assert moved("digits_predictions_total", digit=digit) == 3
    assert moved("digits_low_confidence_predictions_total") == 3 * answers[0]["low_confidence"]
    assert moved("digits_prediction_errors_total") == 1


@pytest.mark.slow
def test_readiness_and_worker_restarts(model):
    """Ready once the workers are up; not ready with a worker dead; the next request
    replaces the pool, which /metrics counts, and the server is ready again."""
    app = create_app(model, workers=1)
    with TestClient(app) as client:
        assert client.get("/api/ready").json() == {"status": "ready", "workers": 1}
        (pid,) = list(app.state.predictor._executor._processes)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (response := client.get("/api/ready")).status_code == 200:
            assert time.monotonic() < deadline, "readiness still passes with the worker dead"
            time.sleep(0.05)
        assert response.status_code == 503 and "not ready" in response.json()["error"]
        assert client.get("/api/health").status_code == 200  # alive all the same
        assert _predict(client).status_code == 200
        assert client.get("/api/ready").status_code == 200
        assert _samples(client)[("digits_worker_restarts_total", ())] == 1


def test_model_info_shows_the_model_not_the_trainers_folders(model):
    with TestClient(create_app(model)) as client:
        info = client.get("/api/model").json()
    assert "command" not in info and "/tmp/" not in str(info)
    assert info["training"] == {"model": "lenet5", "epochs": 2, "seed": 0}
    assert info["dataset"] == "mnist" and info["version"] == "test"
    assert info["metrics"] == {"split": "test", "accuracy": 0.5}


def test_api_key(model):
    key = "s3cret-key"
    with TestClient(create_app(model, api_key=key, max_upload_bytes=1024 * 1024)) as client:
        for headers in ({}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"},
                        {"authorization": f"Basic {key}"}):
            refused = _predict(client, **headers)
            assert refused.status_code == 401, headers
            assert "API key" in refused.json()["error"] and refused.headers["www-authenticate"] == "Bearer"
        assert client.get("/api/model").status_code == 401
        # refused before the body is read: a large body without the key is 401, not 413
        assert _predict(client, bytes(2 * 1024 * 1024)).status_code == 401
        assert _predict(client, **{"x-api-key": key}).status_code == 200
        assert _predict(client, authorization=f"Bearer {key}").status_code == 200
        assert client.get("/api/model", headers={"x-api-key": key}).status_code == 200
        for open_route in ("/", "/docs", "/openapi.json", "/metrics", "/api/health", "/api/ready",
                           "/static/app.js"):
            assert client.get(open_route).status_code == 200, open_route
        spec = client.get("/openapi.json").json()
        assert spec["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
        assert spec["paths"]["/api/predict"]["post"]["security"] == [{"apiKey": []}]
        assert "security" not in spec["paths"]["/api/health"]["get"]
        assert _samples(client)[("digits_http_requests_total", (("method", "POST"), ("route", "/api/predict"),
                                                                ("status", "401")))] == 5
    with TestClient(create_app(model)) as open_client:  # no key: open as before
        assert _predict(open_client).status_code == 200


def test_docs_are_served_from_the_package(model):
    with TestClient(create_app(model)) as client:
        docs = client.get("/docs")
        html = docs.text
        policy = docs.headers["content-security-policy"]
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I)  # nothing from elsewhere
        for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert asset.startswith("/static/swagger-ui/") and client.get(asset).status_code == 200, asset
        assert client.get("/static/swagger-ui/LICENSE").status_code == 200
        # the policy allows exactly the inline script that starts Swagger UI
        (inline,) = re.findall(r"<script>(.*?)</script>", html, re.S)
        digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
        assert f"script-src 'self' 'sha256-{digest}';" in policy and "'unsafe-inline';" not in policy.split(
            "script-src")[1].split(";")[0]
        assert client.get("/redoc").status_code == 404  # it would load from a CDN


def _wait_refused(url: str, deadline: float) -> None:
    """Poll until the server no longer accepts connections (it has begun shutting down)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return
        assert time.monotonic() < deadline, "the server still accepts connections after SIGTERM"
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight(model_path, workers):
    """SIGTERM while a request is in flight: the server stops accepting connections but
    answers that request, then exits. The key comes from DIGITS_API_KEY."""
    key = "k-123"
    with serving(model_path, workers=workers, env={"DIGITS_API_KEY": key}) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as connection:
            # Expect: 100-continue makes the server say when the app starts reading the body:
            # from then on the request is in flight.
            connection.sendall(
                f"POST /api/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
                f"X-API-Key: {key}\r\nContent-Length: {len(SEVEN)}\r\nExpect: 100-continue\r\n\r\n".encode())
            reply = connection.recv(1024)
            assert reply.startswith(b"HTTP/1.1 100"), reply
            os.kill(server.pid, signal.SIGTERM)
            _wait_refused(server.url, time.monotonic() + 30)
            connection.sendall(SEVEN)
            answer = b""
            while chunk := connection.recv(65536):  # the server closes it after answering
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert b'"digit"' in answer
        status = _wait_exit(server.pid, time.monotonic() + 30)
        # uvicorn exits by re-raising the signal it caught, after its graceful shutdown
        assert (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM) or os.WEXITSTATUS(status) == 0


def _wait_exit(pid: int, deadline: float) -> int:
    """The wait status of the child ``pid`` once it has exited."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        assert time.monotonic() < deadline, "the server did not exit after SIGTERM"
        time.sleep(0.05)
