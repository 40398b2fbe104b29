"""Intake's application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial

from fastapi import FastAPI

from guichet_intake import api
from guichet_intake.events import (
    PUBLISHED,
    PiecesRequested,
    RequestAssigned,
    StatusChanged,
    TransferRequested,
)
from guichet_intake.identity import Identity
from guichet_intake.models import metadata
from guichet_intake.seed import seed_demo
from guichet_intake.service import IntakeService
from guichet_intake.settings import IntakeSettings
from guichet_plumbing.bus import Bus
from guichet_plumbing.runtime import ServiceRuntime, create_service_app

log = logging.getLogger(__name__)


def create_app(settings: IntakeSettings | None = None, *, bus: Bus | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    runtime = ServiceRuntime("intake", settings, metadata, bus)
    intake = IntakeService(runtime.db, settings, runtime.metrics, token_keys=runtime.token_keys)
    runtime.publishes(e.event_type for e in PUBLISHED)
    runtime.consume("assignments", [RequestAssigned.event_type], intake.on_request_assigned)
    runtime.consume("statuses", [StatusChanged.event_type], intake.on_status_changed)
    runtime.consume("pieces", [PiecesRequested.event_type], intake.on_pieces_requested)
    runtime.consume("transfers", [TransferRequested.event_type], intake.on_transfer_requested)
    if settings.seed_demo:

        async def seed() -> None:
            await seed_demo(runtime.db)

        runtime.on_startup(seed)
    runtime.on_startup(lambda: start_scheduler(intake, settings.scheduler_interval))
    app = create_service_app(
        runtime,
        title="Guichet — intake",
        description="Réception des demandes de tous canaux, horodatage, accusés de réception "
        "et d'enregistrement signés, délais de décision implicite, dossiers incomplets, "
        "transmissions et envois abusifs.",
        routers=[api.router],
        lanes=api.LANES,
    )
    app.state.intake = intake
    app.state.identity = Identity(runtime.db, settings, runtime.token_keys)
    return app


async def start_scheduler(intake: IntakeService, interval: float) -> Callable[[], Awaitable[None]]:
    """Receipts owed since a failed reception (R23), implicit decisions, transfers to other
    administrations still to be sent (R12) and overdue receipts, every `interval` seconds."""

    async def drain(step: Callable[[], Awaitable[int]]) -> None:
        while await step() > 0:
            pass

    # Each task on its own: a receipt that keeps failing must not stop silence from
    # deciding, nor the overdue gauge from being refreshed.
    tasks: tuple[Callable[[], Awaitable[None]], ...] = (
        partial(drain, intake.issue_owed_receipts),
        partial(drain, intake.decide_due),
        partial(drain, intake.send_transfers),
        intake.refresh_overdue_gauge,
    )

    async def loop() -> None:
        while True:
            for task in tasks:
                try:
                    await task()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("intake scheduler task failed; retrying next pass")
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop(), name="intake-scheduler")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop
