"""Soak test of the web app: a fixed number of requests, valid and hostile mixed, with
prediction workers killed along the way.

    python benchmarks/soak.py --requests 20000 --clients 8 --kills 10 [--json benchmarks/results/soak.json]

Starts its own ``digits serve`` (the shipped model, ``--workers``, default 2) on a free
port. ``--clients`` connections take the requests in turn, one at a time each; request
``i`` is of kind ``KINDS[i % len(KINDS)]``: MNIST test digits as the page, a form upload
and a JSON client send them, and hostile ones (truncated and corrupt images, a PNG whose
decoded pixels would not fit the memory budget, a body over the upload limit, 40 KB of
headers, JSON of the wrong shape, JSON booleans and NaN as pixels, the wrong content
type). ``--kills`` times, evenly spread, one worker process is killed with SIGKILL.

Reported: answers by kind and status, latency percentiles of the valid requests, the
errors (a valid request not answered 200, any 5xx, any request without an answer within
``--timeout`` seconds) and the server's resident memory (the server process alone, after
a warm-up, and at the end). The goal: 0 errors, RSS growth under 10 %. Exits non-zero
when it is not met.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import json
import os
import signal
import struct
import sys
import time
import zlib
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from common import write_json
from digit_recognizer.serve.app import MAX_UPLOAD_BYTES
from digit_recognizer.serve.process import serving
from serve import Connection, payloads


def _png_header(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    """A PNG declaring its size and pixel format, with almost no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def hostile() -> dict[str, tuple[str, bytes, dict]]:
    """kind -> (content type, body, extra headers) of requests that must be refused with a 4xx."""
    buffer = io.BytesIO()
    Image.new("L", (112, 112), 0).save(buffer, "PNG")
    blank = buffer.getvalue()
    rows = [[0] * 28 for _ in range(28)]
    booleans = [[True] * 28 for _ in range(28)]
    return {
        "truncated png": ("image/png", payloads("png", 1)[0][1][:150], {}),
        "random bytes": ("image/png", np.random.default_rng(1).bytes(3000), {}),
        "huge png header": ("image/png", _png_header(7000, 5671, 16, 6), {}),
        "blank image": ("image/png", blank, {}),
        "over the upload limit": ("image/png", bytes(MAX_UPLOAD_BYTES + 1), {}),
        "40 KB of headers": ("image/png", blank, {"X-Padding": "a" * 40_000}),
        "json wrong shape": ("application/json", json.dumps({"pixels": rows[:5]}).encode(), {}),
        "json booleans": ("application/json", json.dumps({"pixels": booleans}).encode(), {}),
        "json NaN": ("application/json", b'{"pixels": [[NaN' + b", 0" * 27 + b"]" + b", [0" + b", 0" * 27 + b"]" * 27 + b"]}", {}),
        "wrong content type": ("text/plain", b"seven", {}),
    }


def kinds(valid_share: int = 3) -> list[str]:
    """The request mix: each hostile kind once per round, each valid kind ``valid_share`` times."""
    mix = []
    for kind in hostile():
        mix += ["png", "multipart", "json"] * valid_share + [kind]
    return mix


async def post(connection: Connection, content_type: str, body: bytes, headers: dict, timeout: float):
    """(status or an exception's name, seconds); a connection that breaks is reopened next time."""
    start = time.perf_counter()
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    try:
        if extra:  # Connection.post has no extra headers: fold them into the content type line
            content_type = f"{content_type}\r\n{extra.rstrip()}"
        status, _ = await asyncio.wait_for(connection.post("/api/predict", content_type, body), timeout)
        return status, time.perf_counter() - start
    except asyncio.TimeoutError:
        connection.close()
        return "no answer", time.perf_counter() - start
    except (OSError, ValueError, StopIteration, asyncio.IncompleteReadError) as error:
        connection.close()
        return type(error).__name__, time.perf_counter() - start


def _workers(server_pid: int) -> list[int]:
    import psutil

    found = []
    for child in psutil.Process(server_pid).children():
        try:
            if "resource_tracker" not in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.Error:
            pass
    return found


def _rss_mib(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


async def soak(url: str, server_pid: int, total: int, clients: int, kills: int, timeout: float):
    address = urlsplit(url)
    valid = {kind: payloads(kind) for kind in ("png", "multipart", "json")}
    bad = hostile()
    mix = kinds()
    statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    latencies: list[float] = []
    errors: list[str] = []
    next_request = 0
    kill_at = set(np.linspace(total / (kills + 1), total - total / (kills + 1), kills).astype(int)) if kills else set()
    killed = 0

    async def client():
        nonlocal next_request, killed
        connection = Connection(address.hostname, address.port)
        while next_request < total:
            i, next_request = next_request, next_request + 1
            if i in kill_at:
                victims = _workers(server_pid)
                if victims:
                    os.kill(victims[i % len(victims)], signal.SIGKILL)
                    killed += 1
            kind = mix[i % len(mix)]
            if kind in valid:
                content_type, body = valid[kind][i % len(valid[kind])]
                headers = {}
            else:
                content_type, body, headers = bad[kind]
            status, seconds = await post(connection, content_type, body, headers, timeout)
            statuses[kind][status] += 1
            if kind in valid:
                if status == 200:
                    latencies.append(seconds)
                else:
                    errors.append(f"{kind}: {status}")
            elif not (isinstance(status, int) and 400 <= status < 500) and status != "ConnectionResetError":
                errors.append(f"{kind}: {status}")  # a 5xx, no answer, or a 2xx for garbage
        connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return statuses, latencies, errors, time.perf_counter() - start, killed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kills", type=int, default=10, help="worker processes killed during the run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a request may take before it counts as a hang")
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", metavar="PATH", help="write the table (benchmarks/common.py)")
    args = parser.parse_args()

    with serving(args.model, workers=args.workers) as server:
        # Warm up (every worker has read an image) before the first RSS reading.
        asyncio.run(soak(server.url, server.pid, 200, args.clients, 0, args.timeout))
        rss_start = _rss_mib(server.pid)
        statuses, latencies, errors, elapsed, killed = asyncio.run(
            soak(server.url, server.pid, args.requests, args.clients, args.kills, args.timeout))
        rss_end = _rss_mib(server.pid)
        alive = _workers(server.pid)

    ms = np.array(latencies) * 1000
    p50, p99 = np.percentile(ms, [50, 99]) if len(ms) else (float("nan"),) * 2
    growth = 100 * (rss_end - rss_start) / rss_start
    print(f"requests {args.requests}  clients {args.clients}  workers {args.workers}  worker kills {killed}  "
          f"{elapsed:.0f} s ({args.requests / elapsed:.0f} req/s)  load average {os.getloadavg()[0]:.1f}")
    rows = []
    for kind in kinds()[:3] + list(hostile()):
        counts = statuses.get(kind, {})
        shown = ", ".join(f"{status}: {n}" for status, n in sorted(counts.items(), key=lambda item: str(item[0])))
        print(f"  {kind:22s} {shown}")
        rows.append([kind, sum(counts.values()), shown])
    print(f"valid requests: p50 {p50:.1f} ms  p99 {p99:.1f} ms")
    print(f"server RSS: {rss_start:.0f} MiB after warm-up, {rss_end:.0f} MiB at the end ({growth:+.1f} %); "
          f"{len(alive)} workers alive at the end")
    print(f"errors: {len(errors)}" + "".join(f"\n  {e}: {n}" for e, n in collections.Counter(errors).most_common(8)))
    met = not errors and growth < 10
    print(f"goal (0 errors, no 5xx, no hang, RSS growth < 10 %): {'met' if met else 'NOT met'}")
    if args.json:
        rows += [["errors", len(errors), "; ".join(f"{e}: {n}" for e, n in collections.Counter(errors).most_common())],
                 ["valid p50 / p99 ms", len(ms), f"{p50:.1f} / {p99:.1f}"],
                 ["server RSS MiB start / end", args.requests, f"{rss_start:.0f} / {rss_end:.0f} ({growth:+.1f} %)"],
                 ["worker kills", killed, f"{len(alive)} of {args.workers} workers alive at the end"],
                 ["seconds", round(elapsed), f"{args.requests / elapsed:.0f} req/s with {args.clients} clients"]]
        write_json(args.json, "soak", ["kind", "requests", "answers by status"], rows,
                   notes="a valid request answered other than 200, any 5xx, or no answer within "
                         f"{args.timeout:g} s counts as an error; goal: 0 errors, RSS growth < 10 %")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
