"""Prometheus metrics of the decision service (prometheus-client), and the ASGI middleware that counts requests.

    decision_service_requests_total{endpoint, method, status}   requests answered
    decision_service_request_seconds{endpoint}                   latency histogram
    decision_service_decisions_total{outcome}                    decisions served: new, or replayed from the audit
    decision_service_batch_requests                              decisions requests answered together (histogram)
    decision_service_bundle_info{name, sha256}                   1 for the bundle served, 0 for earlier ones

`endpoint` is the route's path template (`/v1/decisions`), or `unmatched` for paths the service has not, so
made-up paths cannot grow the number of series. Each app has its own registry; with several workers, set
PROMETHEUS_MULTIPROC_DIR (the launcher does) and `/metrics` sums every worker's counts.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """The service's metrics in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("decision_service_requests", "HTTP requests answered",
                                ("endpoint", "method", "status"), registry=self.registry)
        self.latency = Histogram("decision_service_request_seconds", "HTTP request latency (seconds)",
                                 ("endpoint",), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.decisions = Counter("decision_service_decisions", "decisions served (new, or replayed from the audit)",
                                 ("outcome",), registry=self.registry)
        self.batch = Histogram("decision_service_batch_requests", "decisions requests answered together (one "
                               "conversion, policy run and audit transaction)", buckets=BATCH_BUCKETS,
                               registry=self.registry)
        self.bundle = Gauge("decision_service_bundle_info", "the bundle served (1) and those served before (0)",
                            ("name", "sha256"), registry=self.registry, multiprocess_mode="livemax")

    def serving(self, name: str, sha256: str, previous: tuple[str, str] | None = None) -> None:
        """Mark the bundle served now (and the one before as no longer served)."""
        if previous is not None and previous != (name, sha256):
            self.bundle.labels(*previous).set(0)
        self.bundle.labels(name, sha256).set(1)

    def exposition(self) -> bytes:
        """The text format of every metric (summed over workers in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by route, method and status, and times it (pure ASGI, so it sees every answer,
    those of other middleware included)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
