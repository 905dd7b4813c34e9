"""Load test of the web app: N concurrent clients on loopback for a fixed time.

    python benchmarks/serve.py --clients 8 --duration 10 [--workers N]

Starts its own ``digits serve`` (the shipped model, or ``--model``) on a free port,
unless ``--url`` points at a running one. Each client keeps one HTTP/1.1
connection open and posts, back to back, what the drawing page posts: a
112x112 PNG of a handwritten digit (real MNIST test digits, scaled up as if
drawn on the canvas) as the body; or with ``--payload multipart`` the same PNG
as a form upload, with ``--payload json`` the 28x28 pixels. Prints requests/s,
latency percentiles, the error count and the CPU time per request of server and
load generator, and exits non-zero if any request failed.

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


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process and its descendants (this process when ``pid`` is None)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:  # Linux; fields 14 and 15 are utime and stime in ticks
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in os.listdir(f"/proc/{pid}/task"):  # the worker processes of `digits serve`
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(cpu_seconds(int(child)) for child in f.read().split())
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
    start = time.perf_counter(), cpu_seconds(None), cpu_seconds(server_pid) if server_pid else 0.0
    latencies, errors = await phase(duration)
    elapsed = time.perf_counter() - start[0]
    cpu = {"load generator": cpu_seconds(None) - start[1]}
    if server_pid:
        cpu["server"] = cpu_seconds(server_pid) - start[2]
    for connection in connections:
        connection.close()
    return latencies, errors, elapsed, cpu


def report(latencies, errors, elapsed, cpu, args) -> bool:
    ms = np.array(latencies) * 1000.0
    total = len(ms) + len(errors)
    workers = "default" if args.workers is None else args.workers
    print(f"clients {args.clients}  workers {workers}  measured {elapsed:.1f} s  payload {args.payload}  "
          f"cores {os.cpu_count()}  load average {os.getloadavg()[0]:.1f}")
    print(f"requests {total}  throughput {total / elapsed:.1f} req/s  errors {len(errors)}")
    if len(ms):
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        print(f"latency ms: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {ms.max():.1f}")
    # CPU time per request is the cost, whatever else the machine is doing meanwhile.
    print("CPU ms per request: " + "  ".join(f"{who} {1000 * seconds / max(total, 1):.2f}"
                                             for who, seconds in cpu.items()))
    for detail in sorted(set(errors))[:5]:
        print(f"  error: {detail}")
    met = not errors and len(ms) > 0 and np.percentile(ms, 99) <= GOAL_P99_MS
    print(f"goal (0 errors, p99 <= {GOAL_P99_MS:.0f} ms): {'met' if met else 'NOT met'}")
    return not errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (default 1)")
    parser.add_argument("--payload", choices=["png", "multipart", "json"], default="png",
                        help="png: the body the drawing page posts (default); multipart: the same PNG "
                             "as a form upload (curl -F); json: the 28x28 pixels")
    parser.add_argument("--model", help="model file to serve (default: the shipped model)")
    parser.add_argument("--workers", type=int, help="prediction processes (digits serve --workers; "
                                                     "default: its default, one per core)")
    parser.add_argument("--url", help="benchmark a server already running there instead")
    args = parser.parse_args(argv)

    bodies = payloads(args.payload)
    if args.url:
        results = asyncio.run(load(args.url, args.clients, args.duration, args.warmup, bodies))
    else:
        with serving(args.model, workers=args.workers) as server:
            results = asyncio.run(load(server.url, args.clients, args.duration, args.warmup, bodies,
                                       server_pid=server.pid))
    return 0 if report(*results, args) else 1


if __name__ == "__main__":
    sys.exit(main())
