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
import signal
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

import numpy as np
from PIL import Image

from digit_recognizer import nn, predict, preprocess
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
    result["probabilities"] = [round(float(p), 4) for p in probs[extraction.indices[0]]]
    result["image"] = _png_data_url(extraction.digits)
    return result


def _png_data_url(digits: np.ndarray) -> str:
    """(n, 28, 28) floats in [0, 1] -> one PNG, the digits side by side, as a data: URL."""
    strip = np.concatenate(list(digits), axis=1)
    buffer = io.BytesIO()
    Image.fromarray(np.rint(np.clip(strip, 0, 1) * 255).astype(np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _start_worker(model) -> None:
    global _worker_model
    _worker_model = model
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


class Predictor:
    """``await predictor(source, top_k)`` -> JSON bytes of ``task(model, source, top_k)``.

    ``workers=0``: one thread of this process; ``workers=N``: N worker processes. ``task``
    (default ``run_prediction``) must be a module-level function: workers import it by name.
    """

    def __init__(self, model, workers: int = 0, task: Callable | None = None):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.model, self.task, self.workers = model, task or run_prediction, workers
        self._executor: Executor | None = None
        self._lock = threading.Lock()  # one start at a time (held in a thread, not on the loop)
        self.restarts = 0  # broken pools replaced (a worker died): exported by /metrics

    def _start(self) -> Executor:
        if self.workers == 0:
            return ThreadPoolExecutor(1, thread_name_prefix="inference")
        try:
            # Spawned, not forked: the server process has threads (the event loop's helpers),
            # and a forked child inherits their locks in whatever state they were in.
            executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_start_worker, initargs=(self.model,))
            # Workers start on demand; asking for all of them at once starts every one now.
            for future in [executor.submit(_ready) for _ in range(self.workers)]:
                future.result()
        except BrokenProcessPool:
            raise DigitsError("the prediction worker processes failed to start") from None
        return executor

    def start(self, broken: Executor | None = None) -> Executor:
        """Start the thread or the worker processes now, if not yet started (blocks while
        they load the model); a ``broken`` executor is replaced first."""
        with self._lock:
            if broken is not None and self._executor is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = None
                self.restarts += 1
            if self._executor is None:
                self._executor = self._start()
            return self._executor

    def ready(self) -> bool:
        """Started, and (with worker processes) every worker alive: the readiness check."""
        executor = self._executor
        if executor is None:
            return False
        if self.workers == 0:
            return True
        # ProcessPoolExecutor keeps no public list of its processes; a pool missing one is broken.
        processes = dict(getattr(executor, "_processes", None) or {})
        return (not getattr(executor, "_broken", False) and len(processes) == self.workers
                and all(process.is_alive() for process in processes.values()))

    async def __call__(self, source, top_k: int, task: Callable | None = None) -> bytes:
        """JSON bytes of ``task(model, source, top_k)``; ``task`` defaults to the predictor's own."""
        task = task or self.task
        executor = self._executor or await asyncio.to_thread(self.start)
        loop = asyncio.get_running_loop()
        if self.workers == 0:
            return await loop.run_in_executor(executor, _answer, task, self.model, source, top_k)
        try:
            return await loop.run_in_executor(executor, _answer_in_worker, task, source, top_k)
        except BrokenProcessPool:
            pass
        # A worker died (killed, out of memory): start a fresh pool and try once more.
        executor = await asyncio.to_thread(self.start, executor)
        try:
            return await loop.run_in_executor(executor, _answer_in_worker, task, source, top_k)
        except BrokenProcessPool:
            raise DigitsError("the prediction worker stopped while reading this image") from None

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None
