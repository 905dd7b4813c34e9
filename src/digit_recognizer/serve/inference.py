"""Predictions off the event loop: in worker processes, or in one thread of the server.

A prediction is mostly Python (preprocessing) holding the GIL, so threads of one
process cannot run two at once; several threads only add contention (the load test
measured 14 ms of CPU per request with a pool of threads, 7.5 ms with one). For more
than one core, ``Predictor(model, workers=N)`` runs N processes, each with its own
copy of the model, fed one request at a time from a shared queue, so a busy worker
never holds up a request that an idle one could take.

Answers travel as JSON bytes, encoded where they are computed.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import tempfile
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from digit_recognizer import modelfile, nn, predict, preprocess
from digit_recognizer.errors import DigitsError

_worker_model = None  # in a worker process: the model it serves


def run_prediction(model, source, top_k: int) -> dict:
    """What ``predict_image`` answers, plus what the page shows: every class's probability
    (of the first digit) and the 28x28 input(s) the network read.

    ``predict_image`` is ``extract`` then ``read``; the two steps are spelled out here
    to keep the extraction and the probabilities, without preprocessing twice.
    """
    return read_extraction(model, preprocess.extract(source), top_k)


def read_extraction(model, extraction: preprocess.Extraction, top_k: int) -> dict:
    """``run_prediction`` for an image already through preprocessing."""
    probs = np.asarray(model.predict_proba(extraction.pool))
    result = predict.read(model, extraction, top_k, probs=probs)
    rounded = [[round(float(p), 4) for p in probs[i]] for i in extraction.indices]
    result["probabilities"] = rounded[0]
    for reading, probabilities in zip(result.get("digits", ()), rounded):
        reading["probabilities"] = probabilities
    result["image"] = _png_data_url(extraction.digits)
    return result


def _png_data_url(digits: np.ndarray) -> str:
    """(n, 28, 28) floats in [0, 1] -> one PNG, the digits side by side, as a data: URL."""
    strip = np.concatenate(list(digits), axis=1)
    buffer = io.BytesIO()
    Image.fromarray(np.rint(np.clip(strip, 0, 1) * 255).astype(np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _start_worker(model_path: str) -> None:
    global _worker_model
    # The model comes as a file, not pickled into the start-up message: the parent writes that
    # message into a pipe it also holds open for reading, so a message larger than the pipe's
    # buffer would block the parent for good if the worker died before reading all of it.
    _worker_model = modelfile.load(model_path)
    # A one-image forward pass gains nothing from threads, which would only spin beside the
    # other workers: the engine's threading policy, one thread for it and for BLAS.
    nn.threads(1)
    # Ctrl+C reaches the whole process group: the server stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _answer(task: Callable, model, source, top_k: int) -> bytes:
    return json.dumps(task(model, source, top_k), separators=(",", ":")).encode()


def _answer_in_worker(task: Callable, source, top_k: int) -> bytes:
    return _answer(task, _worker_model, source, top_k)


def _ready() -> None:
    """A no-op task: run once per worker at start, so the first request finds it loaded."""


class WorkersUnavailable(DigitsError):
    """No prediction worker can take a request now (they are starting, or failed to start):
    the web app answers 503, and the pool keeps trying to start them in the background."""


def _processes(executor: Executor) -> list:
    # ProcessPoolExecutor keeps no public list of its processes (and drops it once shut down).
    return list(dict(getattr(executor, "_processes", None) or {}).values())


def _alive(executor: Executor, size: int) -> bool:
    """Is every one of the pool's ``size`` worker processes running? A pool missing one is broken."""
    processes = _processes(executor)
    return (not getattr(executor, "_broken", False) and len(processes) == size
            and all(process.is_alive() for process in processes))


def _stop(executor: Executor, grace: float = 0.0, cancel: bool = False) -> None:
    """Stop a process pool in any state without waiting on it: its workers get ``grace``
    seconds to finish what they run, then are killed. Its queued requests are cancelled
    (``cancel``) or, once the pool finds itself broken, fail with BrokenProcessPool, which
    sends them to the next pool."""
    processes = _processes(executor)
    executor.shutdown(wait=False, cancel_futures=cancel)
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(5)


async def _in_pool(executor: Executor, task: Callable, source, top_k: int) -> bytes:
    """Run one request in a process pool. A pool that is broken, shut down, or stopped with
    this request still queued raises BrokenProcessPool: the caller tries the next pool."""
    try:
        future = executor.submit(_answer_in_worker, task, source, top_k)
    except RuntimeError:  # shut down meanwhile (replaced by another request or the watcher)
        raise BrokenProcessPool("the worker pool was shut down") from None
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        if future.cancelled() and not asyncio.current_task().cancelling():  # the pool's doing, not the caller's
            raise BrokenProcessPool("the worker pool was stopped") from None
        raise


class Predictor:
    """``await predictor(source, top_k)`` -> JSON bytes of ``task(model, source, top_k)``.

    ``workers=0``: one thread of this process; ``workers=N``: N worker processes. ``task``
    (default ``run_prediction``) must be a module-level function: workers import it by name.

    With workers, a pool that loses a process (killed, out of memory) is replaced at once by
    a watcher thread, retrying with growing pauses while a start fails. Every start is
    bounded by ``start_timeout`` seconds, and ``close`` works in any state, a start under
    way included.
    """

    def __init__(self, model, workers: int = 0, task: Callable | None = None, start_timeout: float = 60.0):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.model, self.task, self.workers = model, task or run_prediction, workers
        self.start_timeout = start_timeout
        self._executor: Executor | None = None
        self._lock = threading.Lock()  # one start at a time (held in a thread, not on the loop)
        self._closing = threading.Event()
        self._model_file: str | None = None  # what worker processes load the model from
        self._watcher: threading.Thread | None = None
        self.restarts = 0  # broken pools replaced (a worker died): exported by /metrics

    def _write_model_file(self) -> str:
        if self._model_file is None:
            handle, name = tempfile.mkstemp(prefix="digits-serve-", suffix=".safetensors")
            os.close(handle)
            modelfile.save(name, self.model.net, self.model.metadata)
            self._model_file = name
        return self._model_file

    def _start(self) -> Executor:
        if self.workers == 0:
            return ThreadPoolExecutor(1, thread_name_prefix="inference")
        # Spawned, not forked: the server process has threads (the event loop's helpers),
        # and a forked child inherits their locks in whatever state they were in.
        executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_start_worker, initargs=(self._write_model_file(),))
        # Workers start on demand; asking for all of them at once starts every one now.
        futures = [executor.submit(_ready) for _ in range(self.workers)]
        deadline = time.monotonic() + self.start_timeout
        try:
            # In short waits, so that close() need not wait for a slow start to end.
            while not self._closing.is_set():
                _, pending = wait(futures, timeout=min(0.1, max(0.0, deadline - time.monotonic())))
                if not pending:
                    for future in futures:
                        future.result()  # raises BrokenProcessPool if a worker died
                    return executor
                if time.monotonic() >= deadline:
                    raise WorkersUnavailable(
                        f"the prediction workers did not start within {self.start_timeout:g} s")
            raise WorkersUnavailable("the server is shutting down")
        except BrokenProcessPool:
            _stop(executor)
            raise WorkersUnavailable("a prediction worker stopped while starting") from None
        except BaseException:
            _stop(executor)
            raise

    def start(self, broken: Executor | None = None) -> Executor:
        """Start the thread or the worker processes now, if not yet started (blocks while
        they load the model, at most ``start_timeout`` seconds); a ``broken`` executor is
        replaced first. Raises ``WorkersUnavailable`` when they fail to start."""
        with self._lock:
            if self._closing.is_set():
                raise WorkersUnavailable("the server is shutting down")
            if broken is not None and self._executor is broken:
                self._executor = None
                _stop(broken)
                self.restarts += 1
            if self._executor is None:
                self._executor = self._start()
            if self.workers and self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="worker-watcher", daemon=True)
                self._watcher.start()
            return self._executor

    def _watch(self) -> None:
        """Replace the pool as soon as one of its processes dies, without waiting for a
        request to find out; after a failed start, try again 0.1 s later, then 0.2 s, ... 5 s."""
        pause = 0.1
        while not self._closing.is_set():
            executor = self._executor
            if executor is not None and _alive(executor, self.workers):
                pause = 0.1
                multiprocessing.connection.wait([p.sentinel for p in _processes(executor)], timeout=0.5)
                continue
            try:
                self.start(executor)
            except Exception:  # WorkersUnavailable, or the model file could not be written
                self._closing.wait(pause)
                pause = min(2 * pause, 5.0)

    def ready(self) -> bool:
        """Started, and (with worker processes) every worker alive: the readiness check."""
        executor = self._executor
        if executor is None or self._closing.is_set():
            return False
        return self.workers == 0 or _alive(executor, self.workers)

    async def __call__(self, source, top_k: int, task: Callable | None = None) -> bytes:
        """JSON bytes of ``task(model, source, top_k)``; ``task`` defaults to the predictor's own."""
        task = task or self.task
        executor = self._executor or await asyncio.to_thread(self.start)
        loop = asyncio.get_running_loop()
        if self.workers == 0:
            return await loop.run_in_executor(executor, _answer, task, self.model, source, top_k)
        try:
            return await _in_pool(executor, task, source, top_k)
        except BrokenProcessPool:
            pass
        # A worker died (killed, out of memory): start a fresh pool and try once more.
        executor = await asyncio.to_thread(self.start, executor)
        try:
            return await _in_pool(executor, task, source, top_k)
        except BrokenProcessPool:
            raise DigitsError("the prediction worker stopped while reading this image") from None

    def close(self, grace: float = 10.0) -> None:
        """Stop the thread or the workers, in any state: a start under way gives up within
        0.1 s; workers get ``grace`` seconds to finish what they run. A later request or
        ``start`` starts them again."""
        self._closing.set()
        with self._lock:  # held at most 0.1 s more by a start, now that closing is set
            executor, self._executor = self._executor, None
        if isinstance(executor, ProcessPoolExecutor):
            _stop(executor, grace, cancel=True)
        elif executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(5)
        self._watcher = None
        if self._model_file is not None:
            Path(self._model_file).unlink(missing_ok=True)
            self._model_file = None
        self._closing.clear()  # closed, not spoilt: a later call starts afresh (an app served again)
