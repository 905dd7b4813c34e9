"""Load test of the web app: N concurrent clients on loopback for a fixed time.

    python benchmarks/serve.py --clients 8 --duration 10

Starts its own ``digits serve`` (the shipped model, or ``--model``) on a free port,
unless ``--url`` points at a running one. Each client posts, back to back, what
the drawing page posts: a 280x280 PNG of a handwritten digit (real MNIST test
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
        Image.fromarray(image).resize((280, 280), Image.BILINEAR).save(buffer, "PNG")
        out.append({"files": {"file": ("drawing.png", buffer.getvalue(), "image/png")}})
    return out


async def client(http: httpx.AsyncClient, url: str, bodies, until: float, warmup_until: float,
                 latencies: list, errors: list, offset: int) -> None:
    i = offset
    while (start := time.perf_counter()) < until:
        try:
            response = await http.post(url, **bodies[i % len(bodies)])
            ok = response.status_code == 200
            detail = f"HTTP {response.status_code}: {response.text[:120]}"
        except httpx.HTTPError as error:
            ok, detail = False, f"{type(error).__name__}: {error}"
        elapsed = time.perf_counter() - start
        if start >= warmup_until:
            if ok:
                latencies.append(elapsed)
            else:
                errors.append(detail)
        i += 1


async def load(url: str, clients: int, duration: float, warmup: float, bodies) -> tuple[list, list, float]:
    latencies, errors = [], []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
        warmup_until = time.perf_counter() + warmup
        until = warmup_until + duration
        await asyncio.gather(*(client(http, url + "/api/predict", bodies, until, warmup_until,
                                      latencies, errors, offset=k * 7) for k in range(clients)))
    return latencies, errors, duration


def report(latencies, errors, duration, clients, payload) -> bool:
    ms = np.array(latencies) * 1000.0
    total = len(ms) + len(errors)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99]) if len(ms) else (float("nan"),) * 3
    print(f"clients {clients}  duration {duration:.0f} s  payload {payload}  "
          f"cores {os.cpu_count()}  OMP_NUM_THREADS {os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"requests {total}  throughput {total / duration:.1f} req/s  errors {len(errors)}")
    if len(ms):
        print(f"latency ms: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {ms.max():.1f}")
    for detail in sorted(set(errors))[:5]:
        print(f"  error: {detail}")
    met = not errors and len(ms) > 0 and p99 <= GOAL_P99_MS
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
        with serving(args.model) as url:
            results = asyncio.run(load(url, args.clients, args.duration, args.warmup, bodies))
    return 0 if report(*results, args.clients, args.payload) else 1


if __name__ == "__main__":
    sys.exit(main())
