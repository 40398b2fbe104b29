"""The four services, as the composition root sees them: a prefix, a port, a factory."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from fastapi import FastAPI
from starlette.applications import Starlette

from guichet_gateway.app import create_app as create_gateway
from guichet_gateway.events import PUBLISHED as GATEWAY_EVENTS
from guichet_gateway.settings import GatewaySettings
from guichet_intake.app import create_app as create_intake
from guichet_intake.events import PUBLISHED as INTAKE_EVENTS
from guichet_intake.settings import IntakeSettings
from guichet_notifications.app import create_app as create_notifications
from guichet_notifications.events import PUBLISHED as NOTIFICATIONS_EVENTS
from guichet_notifications.settings import NotificationsSettings
from guichet_plumbing.bus import Bus
from guichet_plumbing.envelope import EventData
from guichet_plumbing.settings import ServiceSettings
from guichet_routing.app import create_app as create_routing
from guichet_routing.events import PUBLISHED as ROUTING_EVENTS
from guichet_routing.settings import RoutingSettings


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    prefix: str
    port: int
    settings: type[ServiceSettings]
    factory: Callable[..., FastAPI]
    events: tuple[type[EventData], ...]

    @property
    def env_prefix(self) -> str:
        return str(self.settings.model_config.get("env_prefix", "GUICHET_"))

    def create(self, shared_bus: Bus | None = None, **overrides: object) -> FastAPI:
        """A new app; `overrides` set settings fields, `shared_bus` replaces its own bus."""
        # Called, not model_validate'd: only __init__ reads the environment as well.
        settings = cast(Any, self.settings)(**overrides)
        return self.factory(settings, bus=shared_bus)


SERVICES = (
    ServiceSpec("intake", "/intake", 8001, IntakeSettings, create_intake, INTAKE_EVENTS),
    ServiceSpec("routing", "/routing", 8002, RoutingSettings, create_routing, ROUTING_EVENTS),
    ServiceSpec(
        "notifications",
        "/notifications",
        8003,
        NotificationsSettings,
        create_notifications,
        NOTIFICATIONS_EVENTS,
    ),
    ServiceSpec("gateway", "/gateway", 8004, GatewaySettings, create_gateway, GATEWAY_EVENTS),
)

BY_NAME = {spec.name: spec for spec in SERVICES}

AppT = TypeVar("AppT", bound=Starlette)

# The cyclic collector's thresholds while serving (CPython's default: 700, 10, 10).
GC_THRESHOLDS = (10_000, 10, 100)

# `serve --workers N`: uvicorn imports the app in each worker; this names the service.
SERVICE_ENV = "GUICHET_SERVE_SERVICE"


def app_from_environment() -> FastAPI:
    """The app of the service named in `GUICHET_SERVE_SERVICE` (uvicorn factory)."""
    return long_lived(BY_NAME[os.environ[SERVICE_ENV]].create())


def long_lived(app: AppT) -> AppT:
    """An app that serves until the process ends, its garbage collector set for serving.

    What the app is built of (routes, schemas, table metadata), then what its startup
    adds (pools, clients, caches), is moved out of the cyclic collector's scans, which
    would otherwise walk all of it again and again. And the youngest generation is
    collected after 10,000 allocations instead of 700: a request's objects live as long
    as the request (tens of milliseconds under load), so at 700 every collection found
    the requests in flight still alive and promoted them to older generations, whose
    collections then walked them too; at 10,000 most die first, freed by reference
    counting (`bench/README.md` has the figures). A frozen object that later becomes
    cyclic garbage is never collected: a bounded loss, once, of what startup made."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    startup = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(served: Any) -> AsyncIterator[Any]:
        async with startup(served) as state:
            gc.collect()
            gc.freeze()
            yield state

    app.router.lifespan_context = lifespan
    return app
