"""Prometheus metrics of one app (its own collector registry, so that several apps in one
process, e.g. in tests, do not collide): requests by route and status, latency by
route, match latency, rate-limit refusals, gallery size, bulk jobs, calibration refits."""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The app's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("reid_http_requests", "HTTP requests answered.",
                                ["method", "route", "status"], registry=r)  # fmt: skip
        self.latency = Histogram("reid_http_request_seconds", "HTTP request latency.",
                                 ["route"], buckets=_BUCKETS, registry=r)  # fmt: skip
        self.match_seconds = Histogram("reid_match_seconds", "Matcher time per query.",
                                       buckets=_BUCKETS, registry=r)  # fmt: skip
        self.decisions = Counter("reid_match_decisions", "Match decisions.", ["decision"],
                                 registry=r)  # fmt: skip
        self.rate_limited = Counter("reid_rate_limited", "Requests refused by rate limits.",
                                    registry=r)  # fmt: skip
        self.gallery_vectors = Gauge("reid_gallery_vectors", "Vectors in the gallery index.",
                                     registry=r)  # fmt: skip
        self.jobs = Gauge("reid_bulk_jobs", "Bulk jobs by state.", ["state"], registry=r)
        self.calibration_refits = Counter(
            "reid_calibration_refits", "Background refits of the match calibration after "
            "enrolments, by result (done, failed, refused: the gallery cannot calibrate itself).",
            ["result"], registry=r)  # fmt: skip

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], name, str(status["code"])).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)
