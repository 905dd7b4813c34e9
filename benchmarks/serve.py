"""Load test of the web app: N concurrent clients on loopback for a fixed time.

    python benchmarks/serve.py --clients 8 --duration 10 [--workers N]
    python benchmarks/serve.py --training lenet5 --json benchmarks/results/serve.json

Starts its own ``digits serve`` (the shipped model, or ``--model``) on a free port,
unless ``--url`` points at a running one. Each client keeps one HTTP/1.1
connection open and posts, back to back, what the drawing page posts: a
112x112 PNG of a handwritten digit (real MNIST test digits, scaled up as if
drawn on the canvas) as the body; or with ``--payload multipart`` the same PNG
as a form upload, with ``--payload json`` the 28x28 pixels. Prints requests/s,
latency percentiles, the error count and the CPU time per request of server and
load generator, and exits non-zero if any request failed.

``--training ARCH`` measures the effect of the page's "watch it learn" on predictions:
phases without and with a training of ARCH running on the server (``POST /api/train``,
all 59,000 training images, so that it outlasts the phase) alternate ``--rounds`` times,
and each kind of phase is reported on its own, with the CPU the training took meanwhile.
``--json PATH`` writes the table (``benchmarks/common.py``).

The clients speak HTTP over asyncio streams directly: a full client library
costs a few milliseconds of CPU per request, which on a 2-core machine would
be taken from the server being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import sys
import time
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from common import write_json
from digit_recognizer import data
from digit_recognizer.serve.process import serving

GOAL_P99_MS = 50.0
PAGE_SIDE = 112  # the drawing page sends its canvas at this size (SEND_SIDE in static/app.js)
BOUNDARY = "digitsbenchmarkboundary"


def payloads(kind: str, n: int = 64) -> list[tuple[str, bytes]]:
    """(content type, body) for ``n`` MNIST test digits, as the page (png), a form upload
    (multipart) or a JSON client sends them."""
    images, _ = data.load("mnist", "test", quiet=True)
    picks = images[np.random.default_rng(0).choice(len(images), n, replace=False)]
    out = []
    for image in picks:
        if kind == "json":
            out.append(("application/json", json.dumps({"pixels": image.tolist()}).encode()))
            continue
        buffer = io.BytesIO()
        Image.fromarray(image).resize((PAGE_SIDE, PAGE_SIDE), Image.BILINEAR).save(buffer, "PNG")
        if kind == "png":
            out.append(("image/png", buffer.getvalue()))
            continue
        body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"drawing.png\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + buffer.getvalue() + f"\r\n--{BOUNDARY}--\r\n".encode()
        out.append((f"multipart/form-data; boundary={BOUNDARY}", body))
    return out


class Connection:
    """One keep-alive HTTP/1.1 connection that posts and reads Content-Length responses."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, path: str, content_type: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        try:
            response = await self.reader.readuntil(b"\r\n\r\n")
            status = int(response[9:12])
            length = next(int(line.split(b":", 1)[1]) for line in response.lower().split(b"\r\n")
                          if line.startswith(b"content-length:"))
            content = await self.reader.readexactly(length)
        except Exception:
            self.close()  # a broken connection is reopened by the next request
            raise
        if b"connection: close" in response.lower():
            self.close()
        return status, content

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def client(connection: Connection, bodies, until: float, latencies: list, errors: list,
                 offset: int) -> None:
    """Post back to back until ``until``, recording each latency (or the error)."""
    i = offset
    while time.perf_counter() < until:
        start = time.perf_counter()
        try:
            status, content = await connection.post("/api/predict", *bodies[i % len(bodies)])
            ok, detail = status == 200, f"HTTP {status}: {content[:120]!r}"
        except (OSError, ValueError, StopIteration, asyncio.IncompleteReadError) as error:
            ok, detail = False, f"{type(error).__name__}: {error}"
        if ok:
            latencies.append(time.perf_counter() - start)
        else:
            errors.append(detail)
        i += 1


def _is_training(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"learning_worker" in f.read()
    except FileNotFoundError:
        return False


def cpu_seconds(pid: int | None, training: bool = False) -> float:
    """User + system CPU time of a process and its descendants (this process when ``pid`` is None),
    not counting a training process of the page (``training=True``: only such processes)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    total = 0.0
    try:
        if training == _is_training(pid):
            with open(f"/proc/{pid}/stat") as f:  # Linux; fields 14 and 15 are utime and stime in ticks
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in os.listdir(f"/proc/{pid}/task"):  # the worker processes of `digits serve`
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(cpu_seconds(int(child), training) for child in f.read().split())
    except FileNotFoundError:  # a process that ended meanwhile
        pass
    return total


async def load(url: str, clients: int, duration: float, warmup: float, bodies, server_pid=None):
    """Run the clients for ``warmup`` seconds (discarded), then for ``duration`` measured ones."""
    address = urlsplit(url)
    connections = [Connection(address.hostname, address.port) for _ in range(clients)]

    async def phase(seconds):
        latencies, errors = [], []
        until = time.perf_counter() + seconds
        await asyncio.gather(*(client(c, bodies, until, latencies, errors, offset=7 * k)
                               for k, c in enumerate(connections)))
        return latencies, errors

    await phase(warmup)
    start = (time.perf_counter(), cpu_seconds(None), cpu_seconds(server_pid) if server_pid else 0.0,
             cpu_seconds(server_pid, training=True) if server_pid else 0.0)
    latencies, errors = await phase(duration)
    elapsed = time.perf_counter() - start[0]
    cpu = {"load generator": cpu_seconds(None) - start[1]}
    if server_pid:
        cpu["server"] = cpu_seconds(server_pid) - start[2]
        cpu["training"] = cpu_seconds(server_pid, training=True) - start[3]
    for connection in connections:
        connection.close()
    return latencies, errors, elapsed, cpu


def summary(latencies, errors, elapsed, cpu) -> dict:
    """The figures of one or more measured phases (their latencies, errors, seconds and CPU pooled)."""
    ms = np.array(latencies) * 1000.0
    total = len(ms) + len(errors)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99]) if len(ms) else (np.nan,) * 3
    return {"requests": total, "throughput": total / elapsed, "errors": errors, "p50": p50, "p90": p90,
            "p99": p99, "max": ms.max() if len(ms) else np.nan, "elapsed": elapsed,
            "cpu_ms": {who: 1000 * seconds / max(total, 1) for who, seconds in cpu.items() if who != "training"},
            "training_cores": cpu.get("training", 0.0) / elapsed}


def report(figures: dict, clients: int, args, label: str = "") -> bool:
    workers = "default" if args.workers is None else args.workers
    print(f"{label}clients {clients}  workers {workers}  measured {figures['elapsed']:.1f} s  "
          f"payload {args.payload}  cores {os.cpu_count()}  load average {os.getloadavg()[0]:.1f}")
    print(f"requests {figures['requests']}  throughput {figures['throughput']:.1f} req/s  "
          f"errors {len(figures['errors'])}")
    if figures["requests"] > len(figures["errors"]):
        print(f"latency ms: p50 {figures['p50']:.1f}  p90 {figures['p90']:.1f}  p99 {figures['p99']:.1f}  "
              f"max {figures['max']:.1f}")
    # CPU time per request is the cost, whatever else the machine is doing meanwhile.
    print("CPU ms per request: " + "  ".join(f"{who} {ms:.2f}" for who, ms in figures["cpu_ms"].items()))
    if figures["training_cores"]:
        print(f"training meanwhile: {figures['training_cores']:.2f} cores")
    for detail in sorted(set(figures["errors"]))[:5]:
        print(f"  error: {detail}")
    met = not figures["errors"] and figures["p99"] <= GOAL_P99_MS
    print(f"goal (0 errors, p99 <= {GOAL_P99_MS:.0f} ms): {'met' if met else 'NOT met'}")
    return not figures["errors"]


def _api(url: str, path: str, settings: dict | None = None) -> dict:
    """GET (or with ``settings``, POST as JSON) an /api/train route of the server at ``url``."""
    import urllib.request

    request = urllib.request.Request(url + path, method="GET" if settings is None else "POST",
                                     data=None if settings is None else json.dumps(settings).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def start_training(url: str, architecture: str, timeout: float = 120.0) -> None:
    """Start a training on the server that outlasts any phase, and wait until it is training."""
    _api(url, "/api/train/reset", {})
    _api(url, "/api/train", {"architecture": architecture, "images": 59_000, "epochs": 50, "batch_size": 64})
    deadline = time.monotonic() + timeout
    while (state := _api(url, "/api/train"))["status"] == "starting":
        if time.monotonic() > deadline:
            raise SystemExit(f"the training did not start within {timeout:.0f} s")
        time.sleep(0.2)
    if state["status"] != "running":
        raise SystemExit(f"the training did not start: {state.get('error') or state['status']}")


def pooled(runs: list) -> tuple:
    """One (latencies, errors, seconds, cpu) from several phases of the same kind."""
    cpu = {}
    for _, _, _, phase_cpu in runs:
        for who, seconds in phase_cpu.items():
            cpu[who] = cpu.get(who, 0.0) + seconds
    return ([x for r in runs for x in r[0]], [x for r in runs for x in r[1]], sum(r[2] for r in runs), cpu)


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a client count or a list of them, like 1,8")
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=_counts, default=[8],
                        help="concurrent clients (default 8); several, as 1,8, measure each in turn")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured (default 10; per phase)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (default 1)")
    parser.add_argument("--payload", choices=["png", "multipart", "json"], default="png",
                        help="png: the body the drawing page posts (default); multipart: the same PNG "
                             "as a form upload (curl -F); json: the 28x28 pixels")
    parser.add_argument("--model", help="model file to serve (default: the shipped model)")
    parser.add_argument("--workers", type=int, help="prediction processes (digits serve --workers; "
                                                     "default: its default, one per core)")
    parser.add_argument("--url", help="benchmark a server already running there instead")
    parser.add_argument("--training", metavar="ARCH", choices=["mlp", "lenet5", "small-cnn", "cnn"],
                        help="also measure while the server trains ARCH (the page's \"watch it learn\"), "
                             "in phases alternating with phases without")
    parser.add_argument("--rounds", type=int, default=2,
                        help="with --training: pairs of phases, without then with (default 2)")
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON (benchmarks/common.py)")
    args = parser.parse_args(argv)

    bodies = payloads(args.payload)

    def measure(url, pid):
        phases = {}
        for clients in args.clients:
            def run(kind):
                phases.setdefault((clients, kind), []).append(
                    asyncio.run(load(url, clients, args.duration, args.warmup, bodies, pid)))

            if not args.training:
                run("predict")
                continue
            try:
                for _ in range(args.rounds):
                    run("no training")
                    start_training(url, args.training)
                    run(f"training {args.training}")
                    _api(url, "/api/train/reset", {})
            finally:
                _api(url, "/api/train/reset", {})
        return phases

    if args.url:
        phases = measure(args.url, None)
    else:
        with serving(args.model, workers=args.workers) as server:
            phases = measure(server.url, server.pid)
    figures = {kind: summary(*pooled(runs)) for kind, runs in phases.items()}
    ok = all([report(f, clients, args, f"[{kind}] " if args.training else "")
              for (clients, kind), f in figures.items()])
    if args.json:
        columns = ["clients", "phase", "requests/s", "p50 ms", "p90 ms", "p99 ms", "errors",
                   "server CPU ms/request", "training cores"]
        rows = [[clients, kind, round(f["throughput"], 1), round(f["p50"], 1), round(f["p90"], 1),
                 round(f["p99"], 1), len(f["errors"]), round(f["cpu_ms"].get("server", float("nan")), 2),
                 round(f["training_cores"], 2)]
                for (clients, kind), f in figures.items()]
        notes = (f"clients posting the page's {PAGE_SIDE}x{PAGE_SIDE} PNG to /api/predict back to "
                 f"back, {args.duration:g} s per phase")
        if args.training:
            notes += (f", {args.rounds} rounds of phases without and with a training of {args.training} running "
                      "(niced, one thread) on the server; training cores: the CPU it got meanwhile")
        write_json(args.json, "serve", columns, rows, notes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
