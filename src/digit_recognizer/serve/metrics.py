"""Prometheus metrics of the web app, served as text at ``GET /metrics``.

    digits_http_requests_total{method, route, status}      requests answered
    digits_http_request_duration_seconds{route}            latency histogram (first byte in
                                                           to last byte out, in the server)
    digits_predictions_total{digit}                         images read, by digit (a number's first)
    digits_low_confidence_predictions_total                 readings flagged "low_confidence"
    digits_prediction_errors_total                          images that could not be read (422)
    digits_worker_restarts_total                            prediction worker pools replaced
    digits_workers                                          prediction worker processes configured

Everything is counted in the server process, which sees every request and every
answer, so the worker processes need no shared metrics files. ``route`` is the
route's template (``/api/predict``, ``/static``), never the raw path: a client
probing random URLs adds one ``route="other"`` series, not one per URL.
"""

from __future__ import annotations

import json
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.routing import Match

# Seconds: a canvas drawing takes ~10 ms, a large photo ~0.5 s, a queue under load more.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Workers:
    """Reads the worker pool's figures when scraped (a collector, so nothing has to push them)."""

    def __init__(self, predictor):
        self.predictor = predictor

    def collect(self):
        restarts = CounterMetricFamily("digits_worker_restarts", "prediction worker pools replaced "
                                       "after a worker died (killed, out of memory)")
        restarts.add_metric([], getattr(self.predictor, "restarts", 0))
        yield restarts
        workers = GaugeMetricFamily("digits_workers", "prediction worker processes "
                                    "(0: predictions run in a thread of the server)")
        workers.add_metric([], self.predictor.workers)
        yield workers


class Metrics:
    """The app's counters, in a registry of their own (so that several apps in one process,
    as in the tests, never share or clash)."""

    def __init__(self, predictor):
        self.registry = CollectorRegistry()
        self.requests = Counter("digits_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("digits_http_request_duration_seconds", "time to answer a request",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.predictions = Counter("digits_predictions", "images read, by the digit read "
                                   "(the first digit of a number)", ["digit"], registry=self.registry)
        self.low_confidence = Counter("digits_low_confidence_predictions",
                                      "readings flagged low_confidence", registry=self.registry)
        self.prediction_errors = Counter("digits_prediction_errors", "images that could not be read "
                                         "(unreadable, no digit, not a digit)", registry=self.registry)
        self.registry.register(_Workers(predictor))

    def count_answer(self, answer: bytes) -> None:
        """Count one prediction from the JSON bytes the worker sent back."""
        result = json.loads(answer)
        self.predictions.labels(str(result["digit"])).inc()
        if result.get("low_confidence"):
            self.low_confidence.inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text a Prometheus scrape gets, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware: count every HTTP request by route and status and time it.

    Outermost, so that answers given before routing (401, 413) are counted too.
    """

    def __init__(self, app, metrics: Metrics, routes):
        self.app, self.metrics, self.routes = app, metrics, routes

    def _route(self, scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:  # PARTIAL: the path matched, the method did not (405)
                # included routers and other route kinds may carry no template of their own
                return getattr(route, "path", None) or "other"
        return "other"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, route, status = time.perf_counter(), self._route(scope), 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
