"""Routing's application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from guichet_plumbing.bus import Bus
from guichet_plumbing.db import Database
from guichet_plumbing.runtime import ServiceRuntime, create_service_app
from guichet_routing import api, open311, service
from guichet_routing.events import PUBLISHED, PiecesReceived, RequestReceived, TransferRefused
from guichet_routing.models import metadata
from guichet_routing.seed import seed_demo
from guichet_routing.settings import RoutingSettings

log = logging.getLogger(__name__)


def create_app(settings: RoutingSettings | None = None, *, bus: Bus | None = None) -> FastAPI:
    settings = settings or RoutingSettings()
    runtime = ServiceRuntime("routing", settings, metadata, bus)
    runtime.publishes(e.event_type for e in PUBLISHED)
    runtime.consume("dispatch", [RequestReceived.event_type], service.on_request_received)
    runtime.consume("pieces", [PiecesReceived.event_type], service.on_pieces_received)
    runtime.consume("transfers", [TransferRefused.event_type], service.on_transfer_refused)
    if settings.seed_demo:

        async def seed() -> None:
            await seed_demo(runtime.db)

        runtime.on_startup(seed)
    runtime.on_startup(lambda: start_scheduler(runtime.db, settings.scheduler_interval))
    return create_service_app(
        runtime,
        title="Guichet — routing",
        description="Qualification et aiguillage des demandes vers le service compétent ; "
        "corbeille unique des agents, tous canaux confondus.",
        routers=[api.router, open311.router],
        own_errors=(open311.PREFIX,),
    )


async def start_scheduler(db: Database, interval: float) -> Callable[[], Awaitable[None]]:
    """Timed transitions and periodic digests (R28, R29), checked every `interval` seconds."""

    async def loop() -> None:
        while True:
            try:
                while await service.fire_due(db) > 0:
                    pass
                await service.send_digests(db)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("routing scheduler pass failed; retrying")
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop(), name="routing-scheduler")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop
