"""Metrics, structured logs, `/health` and `/ready`: the same for every service."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guichet_plumbing.auth import PUBLIC
from guichet_plumbing.jsonbody import JsonRoute


class ServiceMetrics:
    """One registry per service, so four services can share a process without clashing."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "guichet_http_requests",
            "HTTP requests served, by route and status class.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "guichet_http_request_duration_seconds",
            "HTTP request duration, by route.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.events_published = Counter(
            "guichet_events_published",
            "Events relayed from the outbox to the bus.",
            registry=self.registry,
        )
        self.events_consumed = Counter(
            "guichet_events_consumed",
            "Events handled, by type and outcome (applied, duplicate, failed).",
            ["event_type", "outcome"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "guichet_outbox_backlog",
            "Events committed but not yet published.",
            registry=self.registry,
        )
        self.relay_failures = Counter(
            "guichet_relay_failures", "Failed outbox relay passes.", registry=self.registry
        )

    def counter(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, documentation, list(labels), registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, documentation, list(labels), registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times requests by route template, never by raw path (bounded cardinality)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # The labelled series, looked up once each (a route template set is bounded).
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            key = (scope.get("method", "GET"), template, status // 100)
            series = self._series.get(key)
            if series is None:
                method = key[0]
                series = self._series[key] = (
                    self.metrics.http_requests.labels(method, template, f"{key[2]}xx"),
                    self.metrics.http_duration.labels(method, template),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - started)


def health_router(
    metrics: ServiceMetrics, readiness: Callable[[], Awaitable[dict[str, bool]]]
) -> APIRouter:
    router = APIRouter(tags=["exploitation"], dependencies=[PUBLIC], route_class=JsonRoute)

    @router.get("/health", summary="Le processus répond", operation_id="health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/ready",
        summary="Le service est prêt (base et bus joignables)",
        operation_id="ready",
        responses={503: {"description": "Une dépendance n'est pas joignable"}},
    )
    async def ready() -> JSONResponse:
        checks = await readiness()
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not-ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    @router.get(
        "/metrics",
        summary="Métriques Prometheus",
        operation_id="metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("service", "event_id", "request_id", "tenant"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_logs
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every rebalance at INFO; keep the stream readable.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
