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
KILL_MOMENTS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)
PIXELS = np.zeros((28, 28), np.float32)


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
@pytest.mark.parametrize("moment", [0.0, 0.01, 0.05])
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
