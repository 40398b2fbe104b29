"""Helpers for tests that run real servers: uvicorn on a loopback port, polling."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
import uvicorn
from starlette.types import ASGIApp

from guichet_intake.events import ApplicantContact, RequestReceived
from guichet_plumbing import tables
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.localinfra import free_port
from guichet_plumbing.server import BoundedHead

T = TypeVar("T")


@contextlib.asynccontextmanager
async def seeded_database(
    url: str, metadata: sa.MetaData, seed: Callable[[Database], Awaitable[object]]
) -> AsyncIterator[Database]:
    """A service's database at `url`: its tables, the plumbing's, and its demo seed."""
    db = Database(url)
    await db.create_all(metadata, tables.metadata)
    await seed(db)
    try:
        yield db
    finally:
        await db.dispose()


def engine_url(engine: str, label: str, data_dir: Any, pg_database: Callable[[str], str]) -> str:
    """SQLite (the embedded default) or a fresh PostgreSQL database for this test."""
    return (
        f"sqlite:///{data_dir / f'{label}.sqlite3'}" if engine == "sqlite" else pg_database(label)
    )


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, port: int | None = None) -> AsyncIterator[str]:
    """Run `app` (lifespan included) with uvicorn in this event loop; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", http=BoundedHead
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()  # surfaces the start-up error
            raise RuntimeError("uvicorn stopped during start-up")
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start within 30 s")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {result!r})")
        await asyncio.sleep(interval)


def received_event(
    procedure: str | None = "reservation-salle",
    *,
    channel: str = "web",
    payload: dict[str, Any] | None = None,
    location: dict[str, float] | None = None,
    applicant: dict[str, Any] | None = None,
    preference: str = "email",
    received_at: datetime | None = None,
    request_id: uuid.UUID | None = None,
    procedure_kind: str | None = None,
) -> Envelope:
    """An `intake.request.received.v1` as intake itself builds it, for consumers' tests."""
    request_id = request_id or uuid.uuid4()
    received_at = received_at or datetime.now(UTC)
    contact = {
        "name": "Camille Martin",
        "email": None,
        "phone": None,
        "postal_address": None,
        **(applicant or {}),
    }
    return RequestReceived(
        request_id=request_id,
        tracking_code=f"{request_id.hex[:4]}-TEST-TEST-TEST".upper(),
        procedure_code=procedure,
        procedure_title=procedure,
        procedure_kind=procedure_kind,
        channel=channel,
        received_at=received_at,
        reception_date=received_at.date(),
        applicant=ApplicantContact(**contact),
        contact_preference=preference,
        payload=payload or {},
        location=location,
        abusive=False,
    ).envelope(tenant="admiville", subject=str(request_id), occurred_at=received_at)
