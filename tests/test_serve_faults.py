"""The server under faults: worker processes killed while they start, hostile connections.

Every wait here has a deadline; a hang fails the test instead of stalling the suite.
"""

import asyncio
import json
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
psutil = pytest.importorskip("psutil")

from digit_recognizer import modelfile, models, nn  # noqa: E402
from digit_recognizer.errors import DigitsError  # noqa: E402
from digit_recognizer.serve import inference  # noqa: E402
from digit_recognizer.serve.process import serving  # noqa: E402

# Moments after a replacement worker appears at which it is killed: from before it has read
# its start-up message to after it has loaded the model.
KILL_MOMENTS = (0.0, 0.005, 0.02, 0.08, 0.3, 1.0)
PIXELS = np.zeros((28, 28), np.float32)
SEVEN = np.zeros((28, 28), np.float32)
SEVEN[5:8, 8:20] = SEVEN[8:23, 15:18] = 1.0


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    # LeNet-5's weights (about 250 KB) are larger than a pipe's buffer (64 KB).
    nn.manual_seed(0)
    net = models.build(models.ARCHITECTURES["lenet5"])
    metadata = {"spec": models.ARCHITECTURES["lenet5"], "mean": 0.1307, "std": 0.3081,
                "classes": [str(i) for i in range(10)], "dataset": "mnist", "name": "lenet5"}
    return modelfile.save(tmp_path_factory.mktemp("model") / "lenet5.safetensors", net, metadata)


def _workers(pid: int) -> set[int]:
    """The live worker processes of process ``pid`` (not multiprocessing's resource tracker)."""
    found = set()
    for child in psutil.Process(pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:  # exited meanwhile
            pass
    return found


def _kill_replacement(parent: int, old: set[int], moment: float, deadline: float) -> None:
    """Wait for a worker of ``parent`` that is not in ``old``, and kill it ``moment`` s after it appears."""
    while not (new := _workers(parent) - old):
        assert time.monotonic() < deadline, "no replacement worker was started"
    appeared = time.monotonic()
    while time.monotonic() < appeared + moment:  # a deliberate offset into its start-up
        pass
    for pid in new:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _pid_task(model, source, top_k):
    """A task for worker processes (module level, so they can import it)."""
    return {"pid": os.getpid(), "classes": len(model.classes)}


def _answer_eventually(predictor, deadline: float) -> dict:
    while True:
        try:
            return json.loads(asyncio.run(predictor(PIXELS, 3)))
        except inference.WorkersUnavailable:
            assert time.monotonic() < deadline, "the predictor did not recover"


@pytest.mark.slow
def test_a_replacement_worker_killed_while_it_starts_never_wedges_the_predictor(model_path):
    model = modelfile.load(model_path)
    predictor = inference.Predictor(model, workers=1, task=_pid_task)
    try:
        predictor.start()
        for moment in KILL_MOMENTS:
            deadline = time.monotonic() + 60
            old = _workers(os.getpid())
            for pid in old:
                os.kill(pid, signal.SIGKILL)
            outcome = {}

            def ask():
                try:
                    outcome["answer"] = asyncio.run(predictor(PIXELS, 3))
                except DigitsError as error:  # a clear refusal is fine; a hang is not
                    outcome["error"] = error

            asker = threading.Thread(target=ask, daemon=True)
            asker.start()  # this request finds the pool broken and starts a new one
            _kill_replacement(os.getpid(), old, moment, deadline)
            asker.join(max(0.0, deadline - time.monotonic()))
            assert not asker.is_alive(), f"a request hangs after a kill {moment * 1000:g} ms into start-up"
            assert _answer_eventually(predictor, deadline)["classes"] == 10
        assert predictor.ready()
    finally:
        closing = threading.Thread(target=predictor.close, daemon=True)
        closing.start()
        closing.join(30)
        assert not closing.is_alive(), "close() hangs"
    assert not _workers(os.getpid())


@pytest.mark.slow
def test_requests_queued_when_a_worker_is_killed_are_all_answered(model_path):
    """A worker killed with requests queued: every one of them is answered (by the next
    pool), none fails or is cancelled."""
    predictor = inference.Predictor(modelfile.load(model_path), workers=2)
    outcomes = []

    async def one():
        try:
            outcomes.append("digit" in json.loads(await predictor(SEVEN, 3)))
        except BaseException as error:  # noqa: BLE001 - a cancellation is the failure looked for
            outcomes.append(repr(error))

    async def rounds():
        for _ in range(4):
            answered = len(outcomes)
            requests = [asyncio.create_task(one()) for _ in range(40)]
            # once the pool answers (a replaced pool starts with the round's first request):
            # some answered, the rest queued
            deadline = time.monotonic() + 60
            while len(outcomes) == answered and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
            os.kill(sorted(_workers(os.getpid()))[0], signal.SIGKILL)
            await asyncio.wait_for(asyncio.gather(*requests), 120)

    try:
        predictor.start()
        asyncio.run(rounds())
    finally:
        predictor.close()
    assert outcomes == [True] * 160, [o for o in outcomes if o is not True][:3]


@pytest.mark.slow
@pytest.mark.parametrize("moment", [0.0, 0.05])
def test_the_server_recovers_from_a_replacement_killed_while_it_starts_and_stops_on_sigterm(model_path, moment):
    with serving(model_path, workers=1) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        deadline = time.monotonic() + 60
        old = _workers(server.pid)
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        _kill_replacement(server.pid, old, moment, deadline)
        while True:  # until the server answers: never a hang, never a 5xx other than a clear 503
            response = http.post("/api/predict", json={"pixels": PIXELS.tolist()})
            if response.status_code != 503:
                break
            assert "no prediction worker" in response.json()["error"] and response.headers["retry-after"]
            assert time.monotonic() < deadline, "the server did not recover"
        assert response.status_code == 422 and response.json() == {"error": "no digit found"}
        while http.get("/api/ready").status_code != 200:
            assert time.monotonic() < deadline, "the server never became ready again"
        os.kill(server.pid, signal.SIGTERM)
        _wait_exit(server.pid, time.monotonic() + 30)


@pytest.mark.slow
def test_sigterm_while_the_workers_are_being_replaced(model_path):
    with serving(model_path, workers=1) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        old = _workers(server.pid)
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not (_workers(server.pid) - old):  # a replacement is starting
            assert time.monotonic() < deadline
        assert http.get("/api/ready").status_code == 503
        os.kill(server.pid, signal.SIGTERM)
        _wait_exit(server.pid, time.monotonic() + 30)


def _wait_exit(pid: int, deadline: float) -> None:
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        assert time.monotonic() < deadline, "the server did not exit after SIGTERM"
        time.sleep(0.05)


# ---------------------------------------------------------------- request headers

@contextmanager
def _uvicorn(app, protocol):
    """Serve ``app`` with uvicorn and ``protocol`` in a thread, on 127.0.0.1; yields (host, port)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", http=protocol))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _exchange(address, request: bytes, timeout: float = 30) -> bytes:
    """Send ``request`` (as much as the server reads) and return all it answers until it closes."""
    with socket.create_connection(address, timeout=timeout) as connection:
        try:
            connection.sendall(request)
        except (BrokenPipeError, ConnectionResetError):  # it answered and closed before reading all
            pass
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


@pytest.fixture(scope="module")
def small_app(model_path):
    from digit_recognizer.serve import create_app

    return create_app(modelfile.load(model_path))


def test_oversized_or_too_many_headers_get_431(small_app):
    from digit_recognizer.serve.protocol import MAX_HEADERS, LimitedHttpProtocol

    with _uvicorn(small_app, LimitedHttpProtocol) as address:
        fine = _exchange(address, b"GET /api/health HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 20
                         + b"Connection: close\r\n\r\n")
        assert fine.startswith(b"HTTP/1.1 200")
        huge = _exchange(address, b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4_000_000 + b"\r\n\r\n")
        assert huge.startswith(b"HTTP/1.1 431") and b'"error":"request headers over the 32 KiB limit"' in huge
        many = _exchange(address, b"GET /api/health HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n")
        assert many.startswith(b"HTTP/1.1 431") and b"more than 100 request headers" in many
        long_url = _exchange(address, b"GET /" + b"a" * 40_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert long_url.startswith(b"HTTP/1.1 431")
        # the server is none the worse: a keep-alive connection serves request after request
        twice = _exchange(address, b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert twice.count(b"HTTP/1.1 200") == 2


def test_headers_sent_too_slowly_get_408_and_the_connection_closed(small_app):
    from digit_recognizer.serve.protocol import LimitedHttpProtocol

    class Quick(LimitedHttpProtocol):
        header_timeout = 0.5

    with _uvicorn(small_app, Quick) as address:
        for opening in (b"", b"GET /api/health HTTP/1.1\r\nHost: x\r\n"):  # silent, or stalled midway
            start = time.monotonic()
            answer = _exchange(address, opening)  # the server must close it; the socket waits up to 30 s
            assert answer.startswith(b"HTTP/1.1 408") and b"not received within 0.5 s" in answer
            assert time.monotonic() - start < 20
        # headers in time, then a slow answer: no 408 while the app works on it
        answer = _exchange(address, b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")


@pytest.mark.slow
def test_digits_serve_limits_request_headers(model_path):
    with serving(model_path, workers=0) as server:
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        answer = _exchange((host, int(port)), b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: "
                           + b"a" * 1_000_000 + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431")


def test_a_body_sent_too_slowly_gets_408_and_the_connection_closed(model_path, monkeypatch):
    from digit_recognizer.serve import app as app_module
    from digit_recognizer.serve.protocol import LimitedHttpProtocol

    monkeypatch.setattr(app_module, "BODY_TIMEOUT", 0.5)
    app = app_module.create_app(modelfile.load(model_path))
    with _uvicorn(app, LimitedHttpProtocol) as address:
        start = time.monotonic()
        answer = _exchange(address, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                                    b"Content-Length: 1000\r\n\r\n" + b"\x89PNG" * 10)  # 40 of 1000 bytes
        assert answer.startswith(b"HTTP/1.1 408") and b"request body not received within 0.5 s" in answer
        assert time.monotonic() - start < 20
