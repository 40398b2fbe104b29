"""Idempotent consumers: an event's effect and the record that it was handled commit together."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_plumbing.bus import Handler
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.tables import processed_events

log = logging.getLogger(__name__)

Effect = Callable[[AsyncSession, Envelope], Awaitable[None]]


def idempotent(db: Database, consumer: str, effect: Effect, metrics: ServiceMetrics) -> Handler:
    """Wrap `effect` so that each event id changes this database at most once."""

    async def handle(envelope: Envelope) -> None:
        try:
            async with db.transaction() as session:
                seen = await session.scalar(
                    sa.select(sa.literal(1)).where(
                        processed_events.c.consumer == consumer,
                        processed_events.c.event_id == envelope.id,
                    )
                )
                if seen:
                    metrics.events_consumed.labels(envelope.type, "duplicate").inc()
                    return
                await effect(session, envelope)
                # The primary key makes a concurrent second delivery fail here,
                # rolling its effect back with it.
                await session.execute(
                    processed_events.insert().values(
                        consumer=consumer,
                        event_id=envelope.id,
                        event_type=envelope.type,
                        processed_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            if await _already_processed(db, consumer, envelope):
                metrics.events_consumed.labels(envelope.type, "duplicate").inc()
                return
            metrics.events_consumed.labels(envelope.type, "failed").inc()
            raise
        except Exception:
            metrics.events_consumed.labels(envelope.type, "failed").inc()
            raise
        metrics.events_consumed.labels(envelope.type, "applied").inc()

    return handle


async def _already_processed(db: Database, consumer: str, envelope: Envelope) -> bool:
    async with db.sessions() as session:
        return bool(
            await session.scalar(
                sa.select(sa.literal(1)).where(
                    processed_events.c.consumer == consumer,
                    processed_events.c.event_id == envelope.id,
                )
            )
        )
