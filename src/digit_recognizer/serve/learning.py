"""``/api/train``: one training at a time, run beside the server, streamed to the page.

The training runs in its own process (``learning_worker``) at the lowest CPU priority
and on one thread, so predictions keep their speed; it reports JSON lines, which this
module keeps (for a page that connects late) and passes on as Server-Sent Events.
The model it leaves can then answer ``/api/predict?model=trained`` and
``/api/explain?model=trained``, and be downloaded as a model file.

Routes: ``POST /api/train`` (start; 409 while one runs), ``GET /api/train`` (state),
``GET /api/train/events`` (the event stream), ``POST /api/train/stop`` (keep the
weights reached so far), ``POST /api/train/reset`` (forget the run and its model),
``GET /api/train/model`` (download).

The state lives in this server process: behind a load balancer with several replicas,
a page has to talk to one replica for its training (sticky sessions).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal

from fastapi import Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from digit_recognizer import modelfile
from digit_recognizer.serve.inference import Predictor
from digit_recognizer.serve.learning_worker import ARCHITECTURES

MAX_IMAGES = 59_000  # the training split less the 1,000 validation images
STREAM_SECONDS = 10.0  # an event stream ends after this long (the browser reconnects and resumes),
# so that a server shutting down never waits on a stream that would otherwise stay open
RUNNING = ("starting", "running", "stopping")


class TrainRequest(BaseModel):
    """What to train: the page's "watch it learn" settings."""

    architecture: Literal[tuple(ARCHITECTURES)] = Field(  # type: ignore[valid-type]
        "lenet5", description="mlp, lenet5, small-cnn (two small conv layers) or cnn (the shipped model's, slower)")
    learning_rate: float = Field(0.003, gt=0, le=1, description="Adam's step size")
    batch_size: int = Field(32, ge=1, le=1024, description="images per step")
    images: int = Field(2000, ge=100, le=MAX_IMAGES, description="training images (a stratified subset of MNIST's training split)")
    epochs: int = Field(3, ge=1, le=50, description="passes over those images")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="fixes the initial weights and the batch order")


class TrainingState(BaseModel):
    status: str = Field(description="idle, starting, running, stopping, finished, stopped or failed")
    enabled: bool = Field(True, description="false on a server started with --no-training")
    run: int = Field(description="counts the trainings this server has started")
    settings: dict | None = None
    error: str | None = None
    model: dict | None = Field(None, description="the trained model: name, parameters, validation metrics")


def _sse(run: int, seq: int, event: dict) -> str:
    return f"id: {run}-{seq}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


class TrainingSession:
    """One server's training: at most one running; its events; the model it left."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.status, self.run, self.settings, self.error = "idle", 0, None, None
        self.events: list[dict] = []
        self.model: modelfile.Model | None = None
        self.model_path: Path | None = None
        self.predictor: Predictor | None = None
        self._child: subprocess.Popen | None = None
        self._subscribers: set[asyncio.Queue] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._folder: Path | None = None
        self._started = 0.0

    # -- state
    def state(self) -> dict:
        model = None
        if self.model is not None:
            meta = self.model.metadata
            model = {"name": meta.get("name"), "metrics": meta.get("metrics"), "training": meta.get("training"),
                     "parameters": int(sum(p.data.size for p in self.model.net.parameters()))}
        return {"status": self.status, "run": self.run, "settings": self.settings, "error": self.error,
                "model": model, "enabled": self.enabled}

    def trained_predictor(self) -> Predictor:
        if self.predictor is None:
            raise HTTPException(409, "no trained model yet: train one first (POST /api/train)")
        return self.predictor

    # -- events (on the event loop)
    def _publish(self, event: dict) -> None:
        self.events.append(event)
        for queue in self._subscribers:
            queue.put_nowait((self.run, len(self.events), event))

    def _new_run(self, status: str) -> None:
        self.run += 1
        self.events = []
        self.status = status
        self._publish({"event": "session", "status": status, "run": self.run})

    async def stream(self, last_event_id: str | None):
        """The events of the current run as SSE text, from after ``last_event_id`` (a
        reconnecting browser sends it) or from the start; ends when the run is over, or
        after STREAM_SECONDS (the browser then reconnects and resumes)."""
        queue: asyncio.Queue = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            run, seen = self.run, 0
            asked_run, _, asked_seq = (last_event_id or "").partition("-")
            if asked_run == str(run) and asked_seq.isdigit():  # anything else: from the start
                seen = min(int(asked_seq), len(self.events))
            yield "retry: 500\n\n"
            if not self.events:  # idle since start: say so
                yield _sse(run, 0, {"event": "session", "status": self.status, "run": run})
            for seq, event in enumerate(list(self.events[seen:]), start=seen + 1):
                yield _sse(run, seq, event)
                seen = seq
            deadline = time.monotonic() + STREAM_SECONDS
            while self.status in RUNNING or not queue.empty():
                try:
                    event_run, seq, event = await asyncio.wait_for(queue.get(), max(0.0, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    return
                if event_run != run:  # a new run began: the page starts over with it
                    run, seen = event_run, 0
                if seq > seen:
                    yield _sse(run, seq, event)
                    seen = seq
        finally:
            self._subscribers.discard(queue)

    # -- the worker process
    async def start(self, settings: TrainRequest) -> dict:
        if not self.enabled:
            raise HTTPException(403, "training is turned off on this server (digits serve --no-training)")
        if self.status in RUNNING:
            ago = time.monotonic() - self._started
            raise HTTPException(409, f"a training is already running ({self.settings['architecture']}, started "
                                     f"{ago:.0f} s ago): wait for it or stop it first")
        self._loop = asyncio.get_running_loop()
        self._forget_model()
        self.settings, self.error, self._started = settings.model_dump(), None, time.monotonic()
        self._new_run("starting")
        self._folder = Path(tempfile.mkdtemp(prefix="digits-training-"))
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "digit_recognizer.serve.learning_worker",
                   json.dumps(self.settings), str(self._folder)]
        self._child = await asyncio.to_thread(
            subprocess.Popen, command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        threading.Thread(target=self._follow, args=(self._child, self.run), daemon=True,
                         name="training-events").start()
        return self.state()

    def _follow(self, child: subprocess.Popen, run: int) -> None:
        """In a thread: read the worker's events until it exits; load the model it leaves."""
        errors: collections.deque = collections.deque(maxlen=5)
        threading.Thread(target=lambda: errors.extend(child.stderr), daemon=True).start()
        last = None
        for line in child.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            last = event
            model = None
            if event.get("event") == "done":
                try:
                    model = modelfile.load(event["model"])
                except Exception as error:  # noqa: BLE001 - reported as a failed run
                    event = {"event": "failed", "error": f"cannot load the trained model: {error}"}
            self._loop.call_soon_threadsafe(self._on_event, run, event, model)
        code = child.wait()
        if last is None or last.get("event") not in ("done", "failed"):
            detail = next((line.strip() for line in reversed(errors) if line.strip()), "")
            error = f"the training process ended unexpectedly (exit code {code})" + (f": {detail}" if detail else "")
            self._loop.call_soon_threadsafe(self._on_event, run, {"event": "failed", "error": error}, None)

    def _on_event(self, run: int, event: dict, model) -> None:
        if run != self.run:  # a run reset meanwhile
            return
        kind = event.get("event")
        if kind == "start" and self.status == "starting":
            self.status = "running"
        elif kind == "done":
            self.status, self.model, self.model_path = event["status"], model, Path(event["model"])
            self.predictor = Predictor(model, workers=0)
            event = {k: v for k, v in event.items() if k != "model"}  # the server's path is no one's business
        elif kind == "failed":
            self.status, self.error = "failed", event.get("error")
        self._publish(event)

    def stop(self) -> dict:
        if self.status not in RUNNING or self._child is None:
            raise HTTPException(409, "no training is running")
        if self.status != "stopping":
            self.status = "stopping"
            self._publish({"event": "stopping"})
            try:
                self._child.stdin.write("stop\n")
                self._child.stdin.flush()
            except (OSError, ValueError):  # it has just ended
                pass
        return self.state()

    def _end_child(self) -> None:
        child, self._child = self._child, None
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        if child is not None and child.stdin:
            try:
                child.stdin.close()
            except OSError:
                pass

    def _forget_model(self) -> None:
        if self.predictor is not None:
            self.predictor.close()
        self.model = self.model_path = self.predictor = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def reset(self) -> dict:
        self._end_child()
        self._forget_model()
        self.settings = self.error = None
        self._new_run("idle")
        return self.state()

    def close(self) -> None:
        self._end_child()
        self._forget_model()


def add_routes(app, session: TrainingSession, error_model: type[BaseModel]) -> None:
    """Add the /api/train routes of ``session`` to ``app``; errors are documented as ``error_model``."""
    errors = {403: {"model": error_model}, 409: {"model": error_model}, 422: {"model": error_model}}
    tags = ["watch it learn"]

    @app.post("/api/train", tags=tags, summary="Start training a network on an MNIST subset", status_code=202,
                 response_model=TrainingState, responses={400: {"model": error_model}, **errors})  # 400: a body not JSON
    async def start(settings: TrainRequest):
        return await session.start(settings)

    @app.get("/api/train", tags=tags, summary="The training's state", response_model=TrainingState)
    async def state():
        return session.state()

    @app.get("/api/train/events", tags=tags, summary="The training's progress as Server-Sent Events",
                response_class=StreamingResponse,
                description="One JSON object per event (`data:` line), with an `event` field: `session` "
                            "(a run begins: start over), `start` (sizes, the validation grid and its labels, "
                            "the first layer's initial filters), `step` (every batch: loss, accuracy), "
                            "`eval` (a few times an epoch: validation loss and accuracy, the grid's "
                            "predictions, the first layer's filters), `stopping`, `done` (finished or "
                            "stopped, final validation accuracy) or `failed` (error). A stream ends "
                            "with the run, or after 10 s; resume with the Last-Event-ID header.")
    async def events(request: Request):
        return StreamingResponse(session.stream(request.headers.get("last-event-id")),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/api/train/stop", tags=tags, summary="Stop the training, keeping the weights reached so far",
                 response_model=TrainingState, responses=errors)
    async def stop():
        return session.stop()

    @app.post("/api/train/reset", tags=tags, summary="Stop any training and forget its model", response_model=TrainingState)
    async def reset():
        return session.reset()

    @app.get("/api/train/model", tags=tags, summary="Download the trained model file (.safetensors)",
                response_class=FileResponse, responses=errors)
    async def download():
        if session.model_path is None or not session.model_path.is_file():
            raise HTTPException(409, "no trained model yet: train one first (POST /api/train)")
        name = f"{session.model.metadata.get('name', 'model')}-trained-on-the-page.safetensors"
        return FileResponse(session.model_path, media_type="application/octet-stream", filename=name)
