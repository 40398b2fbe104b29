"""Intake's application factory."""

from __future__ import annotations

from fastapi import FastAPI

from guichet_intake import api, service
from guichet_intake.events import PUBLISHED, RequestAssigned
from guichet_intake.models import metadata
from guichet_intake.seed import seed_demo
from guichet_intake.settings import IntakeSettings
from guichet_plumbing.bus import Bus
from guichet_plumbing.runtime import ServiceRuntime, create_service_app


def create_app(settings: IntakeSettings | None = None, *, bus: Bus | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    runtime = ServiceRuntime("intake", settings, metadata, bus)
    runtime.publishes(e.event_type for e in PUBLISHED)
    runtime.consume("assignments", [RequestAssigned.event_type], service.on_request_assigned)
    if settings.seed_demo:

        async def seed() -> None:
            await seed_demo(runtime.db)

        runtime.on_startup(seed)
    return create_service_app(
        runtime,
        title="Guichet — intake",
        description="Réception des demandes de tous canaux, horodatage, accusés de réception "
        "et d'enregistrement, délais de décision implicite.",
        routers=[api.router],
    )
