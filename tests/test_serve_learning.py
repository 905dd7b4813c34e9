"""/api/train: a real server trains a network beside itself, streams it, and serves the result."""

import json
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from digit_recognizer import modelfile, predict  # noqa: E402
from digit_recognizer.serve.process import serving  # noqa: E402
from test_serve_inside import seven_png as _seven  # noqa: E402

pytestmark = pytest.mark.slow
RUNNING = ("starting", "running", "stopping")


@pytest.fixture(scope="module")
def client(mnist_data_dir):
    env = {"DIGITS_DATA_DIR": os.environ.get("DIGITS_DATA_DIR", str(Path(mnist_data_dir)))}
    with serving(workers=0, env=env) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        client.server = server
        yield client


def events(client, last_event_id=None, until=("done", "failed"), deadline=120.0):
    """The run's events, reconnecting as a browser does, until one of ``until`` (or the deadline)."""
    seen, stop_at = [], time.monotonic() + deadline
    while time.monotonic() < stop_at:
        headers = {"last-event-id": last_event_id} if last_event_id else {}
        with client.stream("GET", "/api/train/events", headers=headers) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("id: "):
                    last_event_id = line[4:]
                elif line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["event"] in until:
                        return seen
        if client.get("/api/train").json()["status"] not in RUNNING and until == ("done", "failed"):
            return seen
    raise AssertionError(f"no {until} event within {deadline} s; saw {[e['event'] for e in seen]}")


def _children(pid):
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(child) for child in f.read().split()]
    return found


def test_a_training_runs_streams_and_serves_its_model(client, tmp_path):
    client.post("/api/train/reset")
    seven = {"content": _seven(), "headers": {"content-type": "image/png"}}
    assert client.post("/api/predict?model=trained", **seven).status_code == 409
    answer = client.post("/api/train", json={"architecture": "lenet5", "images": 2000, "epochs": 2})
    assert answer.status_code == 202 and answer.json()["status"] == "starting"
    busy = client.post("/api/train", json={"architecture": "mlp"})
    assert busy.status_code == 409 and "already running" in busy.json()["error"]

    seen = events(client)
    kinds = [e["event"] for e in seen]
    assert kinds[0] == "session" and kinds[1] == "start" and kinds[-1] == "done", kinds
    start = seen[1]
    assert start["n_train"] == 2000 and len(start["grid_labels"]) == len(start["grid"]) == 40
    assert start["grid_labels"] == sorted(start["grid_labels"])  # every class, in order
    steps = [e for e in seen if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 2 * (2000 // 32) + 1))  # every batch, in order
    evals = [e for e in seen if e["event"] == "eval"]
    assert len(evals) >= 8 and evals[-1]["val_accuracy"] > evals[0]["val_accuracy"]
    assert all(len(e["grid_predictions"]) == 40 and e["filters"].startswith("data:image/png") for e in evals)
    done = seen[-1]
    assert done["status"] == "finished" and done["val_accuracy"] == evals[-1]["val_accuracy"] > 0.85

    state = client.get("/api/train").json()
    assert state["status"] == "finished" and state["model"]["name"] == "lenet5"
    assert state["model"]["metrics"]["accuracy"] == done["val_accuracy"]

    trained = client.post("/api/predict?model=trained", **seven).json()
    served = client.post("/api/predict", **seven).json()
    assert trained["probabilities"] != served["probabilities"]
    inside = client.post("/api/explain?model=trained", **seven).json()
    assert [layer["type"] for layer in inside["layers"]][:3] == ["Conv2D", "ReLU", "MaxPool2D"]

    download = client.get("/api/train/model")
    assert download.status_code == 200 and "lenet5" in download.headers["content-disposition"]
    (tmp_path / "trained.safetensors").write_bytes(download.content)
    model = modelfile.load(tmp_path / "trained.safetensors")
    assert predict.predict_image(model, _seven())["top_k"] == trained["top_k"]  # the same model
    assert model.metadata["training"]["status"] == "finished"

    # A reconnecting page resumes after the last event it saw.
    again = events(client, last_event_id=f"{state['run']}-5")
    for odd in ("x", f"{state['run']}-", f"{state['run']}-x9", "-1-2"):  # malformed: from the start
        assert events(client, last_event_id=odd) == seen
    assert events(client, last_event_id=f"{state['run']}-99999") == []  # past the end: nothing more
    assert [(e["event"], e.get("step")) for e in again] == [(e["event"], e.get("step")) for e in seen[5:]]

    assert client.post("/api/train/reset").json()["status"] == "idle"
    assert client.post("/api/predict?model=trained", **seven).status_code == 409
    assert client.get("/api/train/model").status_code == 409


def test_stop_keeps_the_weights_so_far_and_the_worker_runs_niced(client):
    client.post("/api/train/reset")
    assert client.post("/api/train", json={"architecture": "mlp", "images": 2000, "epochs": 50}).status_code == 202
    events(client, until=("eval",))
    workers = [pid for pid in _children(client.server.pid)
               if "learning_worker" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 1
    with open(f"/proc/{workers[0]}/stat") as f:
        assert int(f.read().rsplit(")", 1)[1].split()[16]) == 19  # field 19: nice
    assert client.post("/api/train/stop").json()["status"] == "stopping"
    done = events(client)[-1]
    assert done["event"] == "done" and done["status"] == "stopped" and 0 < done["steps"] < 50 * 62
    assert client.get("/api/train").json()["status"] == "stopped"
    assert client.post("/api/train/stop").status_code == 409
    assert client.get("/api/train/model").status_code == 200


def test_bad_settings_and_failed_runs_are_one_line_errors(client):
    client.post("/api/train/reset")
    bad = client.post("/api/train", json={"architecture": "resnet"})
    assert bad.status_code == 422 and "architecture" in bad.json()["error"]
    assert client.post("/api/train", json={"images": 5}).status_code == 422
    assert client.post("/api/train", json={"images": 100, "batch_size": 1000}).status_code == 202
    failed = events(client)[-1]
    assert failed["event"] == "failed" and "fewer than one batch" in failed["error"]
    assert client.get("/api/train").json()["status"] == "failed"
