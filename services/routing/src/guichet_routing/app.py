"""Routing's application factory."""

from __future__ import annotations

from fastapi import FastAPI

from guichet_plumbing.bus import Bus
from guichet_plumbing.runtime import ServiceRuntime, create_service_app
from guichet_routing import api, open311, service
from guichet_routing.events import PUBLISHED, RequestReceived
from guichet_routing.models import metadata
from guichet_routing.seed import seed_demo
from guichet_routing.settings import RoutingSettings


def create_app(settings: RoutingSettings | None = None, *, bus: Bus | None = None) -> FastAPI:
    settings = settings or RoutingSettings()
    runtime = ServiceRuntime("routing", settings, metadata, bus)
    runtime.publishes(e.event_type for e in PUBLISHED)
    runtime.consume("dispatch", [RequestReceived.event_type], service.on_request_received)
    if settings.seed_demo:

        async def seed() -> None:
            await seed_demo(runtime.db)

        runtime.on_startup(seed)
    return create_service_app(
        runtime,
        title="Guichet — routing",
        description="Qualification et aiguillage des demandes vers le service compétent ; "
        "corbeille unique des agents, tous canaux confondus.",
        routers=[api.router, open311.router],
    )
