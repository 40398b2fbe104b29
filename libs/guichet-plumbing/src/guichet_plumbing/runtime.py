"""What every service process has: a database, a bus, an outbox relay, consumers, one app shape."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from guichet_plumbing import tables
from guichet_plumbing.access_log import access_log_router
from guichet_plumbing.auth import api_routes, document_policies
from guichet_plumbing.bus import Bus, InProcessBus, KafkaBus
from guichet_plumbing.db import Database
from guichet_plumbing.inbox import Effect, idempotent
from guichet_plumbing.lane import Lane, Lanes
from guichet_plumbing.observability import MetricsMiddleware, ServiceMetrics, health_router
from guichet_plumbing.outbox import Relay
from guichet_plumbing.problems import (
    BodyLimitMiddleware,
    ProblemDetails,
    document_body_problems,
    install_problem_handlers,
)
from guichet_plumbing.ratelimit import WriteLimiter
from guichet_plumbing.settings import ServiceSettings


def make_bus(settings: ServiceSettings) -> Bus:
    if settings.bus == "kafka":
        return KafkaBus(
            settings.kafka_bootstrap_servers,
            topic_prefix=settings.kafka_topic_prefix,
            idempotent_producer=settings.kafka_idempotent_producer,
        )
    return InProcessBus()


class ServiceRuntime:
    def __init__(
        self, name: str, settings: ServiceSettings, metadata: sa.MetaData, bus: Bus | None = None
    ) -> None:
        self.name = name
        self.settings = settings
        self.metadata = metadata
        self.db = Database(settings.resolved_database_url(name))
        self.bus = bus if bus is not None else make_bus(settings)
        self.metrics = ServiceMetrics(name)
        self.relay = Relay(
            self.db, self.bus, self.metrics, poll_interval=settings.relay_poll_interval
        )
        self.token_keys = settings.token_keys()
        self._startup_hooks: list[Any] = []

    def publishes(self, event_types: Iterable[str]) -> None:
        self.bus.declare(event_types)

    def consume(self, consumer: str, event_types: Iterable[str], effect: Effect) -> None:
        """Subscribe `effect`; it runs at most once per event, in its own transaction."""
        group = f"{self.name}.{consumer}"
        self.bus.subscribe(group, event_types, idempotent(self.db, group, effect, self.metrics))

    def on_startup(self, hook: Any) -> None:
        """An async callable run after the schema exists (seeding, background loops)."""
        self._startup_hooks.append(hook)

    async def readiness(self) -> dict[str, bool]:
        return {"database": await self.db.ping(), "bus": self.bus.is_ready()}

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        stops = []
        # Replicas or workers starting together take turns: schema creation and seeding
        # check, then write, and must not interleave.
        async with self.db.exclusive(f"startup:{self.name}"):
            # Creating or upgrading the schema is idempotent (`upgrade_schema`).
            await self.db.create_all(self.metadata, tables.metadata)
            for hook in self._startup_hooks:
                stop = await hook()
                if stop is not None:
                    stops.append(stop)
        await self.bus.start()
        if self.settings.relay_enabled:
            self.relay.start()
        try:
            yield
        finally:
            await self.relay.stop()
            await self.bus.stop()
            for stop in reversed(stops):
                await stop()
            await self.db.dispose()


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_service_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str,
    routers: Iterable[APIRouter],
    lanes: Iterable[Lane] = (),
    version: str = "0.1.0",
    own_errors: tuple[str, ...] = (),
) -> FastAPI:
    """The service's app; `own_errors`: path prefixes whose routes answer refusals in
    their own standard's format (Open311), which the middlewares leave to them."""
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=runtime.lifespan,
        generate_unique_id_function=_operation_id,
        openapi_tags=[{"name": "exploitation", "description": "Santé, disponibilité, métriques."}],
        # Metrics are Prometheus's (`MetricsMiddleware`): FastAPI's native OpenTelemetry is
        # off, not asked at every request whether a provider was configured meanwhile.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_problem_handlers(app)
    for router in routers:
        app.include_router(router)
    app.include_router(access_log_router(runtime.db))
    app.include_router(health_router(runtime.metrics, runtime.readiness))
    if runtime.settings.fast_lanes:
        # Innermost of our middlewares: lanes are measured and size-limited like any route.
        app.add_middleware(Lanes, lanes=_lane_routes(app, lanes), handlers=app.exception_handlers)
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=runtime.settings.max_body_bytes, own_errors=own_errors
    )
    app.state.runtime = runtime
    app.state.token_keys = runtime.token_keys
    app.state.write_limiter = WriteLimiter(runtime.settings.write_rate_limit)
    _register_problem_schema(app)
    return app


def _lane_routes(app: FastAPI, lanes: Iterable[Lane]) -> dict[tuple[str, str], tuple[Lane, Any]]:
    """Each lane with the FastAPI route it serves, which must exist (its declaration)."""
    declared = {(method, path): c.original_route for method, path, c in api_routes(app)}
    found = {}
    for lane in lanes:
        route = declared.get((lane.method, lane.path))
        if route is None:
            raise ValueError(f"lane {lane.method} {lane.path} serves no declared route")
        found[(lane.method, lane.path)] = (lane, route)
    return found


def _register_problem_schema(app: FastAPI) -> None:
    """Make `ProblemDetails` a named component the `responses=` entries can reference."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.setdefault(
                "ProblemDetails",
                ProblemDetails.model_json_schema(
                    by_alias=True, ref_template="#/components/schemas/{model}"
                ),
            )
            defs = components["ProblemDetails"].pop("$defs", {})
            components.update(defs)
            document_body_problems(schema)
            document_policies(app, schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
