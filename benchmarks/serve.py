"""Load test of the web app: N concurrent clients on loopback for a fixed time.

    python benchmarks/serve.py --clients 8 --duration 10

Starts its own ``digits serve`` (the shipped model, or ``--model``) on a free port,
unless ``--url`` points at a running one. Each client posts, back to back, what
the drawing page posts: a 112x112 PNG of a handwritten digit (real MNIST test
digits, scaled up as if drawn on the canvas), or with ``--payload json`` the
28x28 pixels. Prints requests/s, latency percentiles and the error count, and
exits non-zero if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import time

import httpx
import numpy as np
from PIL import Image

from digit_recognizer import data
from digit_recognizer.serve.process import serving

GOAL_P99_MS = 50.0
PAGE_SIDE = 112  # the drawing page sends its canvas at this size (SEND_SIDE in static/app.js)


def payloads(kind: str, n: int = 64) -> list[dict]:
    """httpx request kwargs for ``n`` MNIST test digits, as the page or a JSON client sends them."""
    images, _ = data.load("mnist", "test", quiet=True)
    picks = images[np.random.default_rng(0).choice(len(images), n, replace=False)]
    out = []
    for image in picks:
        if kind == "json":
            out.append({"json": {"pixels": image.tolist()}})
            continue
        buffer = io.BytesIO()
        Image.fromarray(image).resize((PAGE_SIDE, PAGE_SIDE), Image.BILINEAR).save(buffer, "PNG")
        out.append({"files": {"file": ("drawing.png", buffer.getvalue(), "image/png")}})
    return out


async def client(http: httpx.AsyncClient, url: str, bodies, until: float,
                 latencies: list, errors: list, offset: int) -> None:
    """Post back to back until ``until``, recording each latency (or the error)."""
    i = offset
    while time.perf_counter() < until:
        start = time.perf_counter()
        try:
            response = await http.post(url, **bodies[i % len(bodies)])
            ok = response.status_code == 200
            detail = f"HTTP {response.status_code}: {response.text[:120]}"
        except httpx.HTTPError as error:
            ok, detail = False, f"{type(error).__name__}: {error}"
        if ok:
            latencies.append(time.perf_counter() - start)
        else:
            errors.append(detail)
        i += 1


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (this one when ``pid`` is None)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        import psutil
    except ImportError:
        return float("nan")
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def load(url: str, clients: int, duration: float, warmup: float, bodies, server_pid=None):
    """Run the clients for ``warmup`` seconds (discarded), then for ``duration`` measured ones."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:

        async def phase(seconds):
            latencies, errors = [], []
            until = time.perf_counter() + seconds
            await asyncio.gather(*(client(http, url + "/api/predict", bodies, until, latencies, errors,
                                          offset=7 * k) for k in range(clients)))
            return latencies, errors

        await phase(warmup)
        before = cpu_seconds(None), cpu_seconds(server_pid) if server_pid else None
        latencies, errors = await phase(duration)
        cpu = {"client": cpu_seconds(None) - before[0]}
        if server_pid:
            cpu["server"] = cpu_seconds(server_pid) - before[1]
    return latencies, errors, duration, cpu


def report(latencies, errors, duration, cpu, clients, payload) -> bool:
    ms = np.array(latencies) * 1000.0
    total = len(ms) + len(errors)
    print(f"clients {clients}  duration {duration:.0f} s  payload {payload}  "
          f"cores {os.cpu_count()}  OMP_NUM_THREADS {os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"requests {total}  throughput {total / duration:.1f} req/s  errors {len(errors)}")
    if len(ms):
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        print(f"latency ms: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {ms.max():.1f}")
    # CPU per request shows the cost independently of what else the machine is doing.
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
    parser.add_argument("--payload", choices=["png", "json"], default="png")
    parser.add_argument("--model", help="model file to serve (default: the shipped model)")
    parser.add_argument("--url", help="benchmark a server already running there instead")
    args = parser.parse_args(argv)

    bodies = payloads(args.payload)
    if args.url:
        results = asyncio.run(load(args.url.rstrip("/"), args.clients, args.duration, args.warmup, bodies))
    else:
        with serving(args.model) as server:
            results = asyncio.run(load(server.url, args.clients, args.duration, args.warmup, bodies,
                                       server_pid=server.pid))
    return 0 if report(*results, args.clients, args.payload) else 1


if __name__ == "__main__":
    sys.exit(main())
