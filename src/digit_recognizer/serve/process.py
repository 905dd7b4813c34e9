"""Run ``digits serve`` in a child process: for the browser test, the load test and notebooks.

    with serving(model_path) as server:   # server.url like "http://127.0.0.1:41234"
        httpx.get(server.url + "/api/health")

The server binds port 0 (any free port) and reports the real one on stderr, so
there is no race between picking a port and binding it.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from typing import NamedTuple

from digit_recognizer.errors import DigitsError

_READY = re.compile(r"serving on (http://\S+?)/? ")


class Server(NamedTuple):
    url: str  # base URL, no trailing slash
    pid: int  # the server process (for CPU accounting)


@contextmanager
def serving(model=None, host: str = "127.0.0.1", port: int = 0, workers: int | None = None,
            timeout: float = 60.0, env=None):
    """Start the server, yield a :class:`Server` once it accepts connections, stop it afterwards.
    ``workers``: as ``digits serve --workers`` (default: its default)."""
    command = [sys.executable, "-m", "digit_recognizer", "serve", "--host", host, "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    if model is not None:
        command += ["--model", str(model)]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **(env or {})})
    lines: queue.Queue = queue.Queue()

    def drain():  # keep reading so a chatty server never blocks on a full pipe
        for line in child.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    try:
        seen = []
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                raise DigitsError(f"the server did not start within {timeout:.0f} s") from None
            if line is None:
                raise DigitsError(f"the server exited: {''.join(seen).strip()}")
            seen.append(line)
            match = _READY.search(line)
            if match:
                break
        yield Server(match.group(1), child.pid)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
