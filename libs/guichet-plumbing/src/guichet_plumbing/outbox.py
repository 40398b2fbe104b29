"""Transactional outbox: events are rows written with the state change, then relayed.

`stage()` is called inside the unit of work that changes state; the `Relay`
publishes committed rows in order and marks them published. A crash between
publish and mark republishes the event on restart, which consumers absorb
because they are idempotent (see `inbox`). Nothing committed is ever lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_plumbing.bus import Bus, Outgoing, PublishFailed
from guichet_plumbing.db import Database, after_commit
from guichet_plumbing.envelope import Envelope, WrittenEnvelope
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.tables import outbox

log = logging.getLogger(__name__)


def rows(envelopes: Sequence[Envelope | WrittenEnvelope]) -> list[dict[str, Any]]:
    """The outbox rows of `envelopes`, for `stage` or a caller's own one-statement write."""
    now = datetime.now(UTC)
    return [
        {
            "event_id": e.id,
            "event_type": e.type,
            "subject": e.subject,
            "payload": e.to_bytes(),
            "created_at": now,
        }
        for e in envelopes
    ]


async def stage(session: AsyncSession, *envelopes: Envelope | WrittenEnvelope) -> None:
    """Write events in the caller's transaction; they leave only if it commits."""
    await session.execute(outbox.insert(), rows(envelopes))
    # Polling stays the safety net; this only shortens the wait.
    after_commit(session, wake_relays)


_relays: set[Relay] = set()


def wake_relays() -> None:
    """Events were just committed: relays of this process look now, not at their next poll."""
    for relay in _relays:
        relay.wake()


# PostgreSQL relay statements, on a bare connection (see `Database.raw`). SKIP LOCKED lets
# several replicas relay one outbox without publishing a row twice in the normal case:
# the rows stay locked while they are published.
_PENDING_LOCKED = """
SELECT seq, event_type, subject, payload FROM outbox
WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED
"""
_MARK_PUBLISHED = "UPDATE outbox SET published_at = $1 WHERE seq = ANY($2::bigint[])"
_COUNT_FAILED = "UPDATE outbox SET attempts = attempts + 1 WHERE seq = $1"
_BACKLOG = "SELECT count(*) FROM outbox WHERE published_at IS NULL"


class Relay:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        metrics: ServiceMetrics,
        *,
        batch_size: int = 100,
        poll_interval: float = 0.5,
        backlog_interval: float = 1.0,
        linger: float = 0.02,
    ) -> None:
        self.db = db
        self.bus = bus
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        # How long a woken relay waits for more commits before its pass (Kafka's
        # linger.ms): a few milliseconds of event latency for far fewer passes under load.
        self.linger = linger
        # The backlog gauge is a count over the outbox: refreshed at most this often.
        self.backlog_interval = backlog_interval
        self._backlog_at = -backlog_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._own_connection = False
        self._conn: asyncpg.Connection | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Publish one batch of pending events; returns how many were published."""
        if self.db.is_postgres:
            async with self._connection() as conn, conn.transaction():
                rows = [
                    (seq, Outgoing(event_type, subject, payload))
                    for seq, event_type, subject, payload in await conn.fetch(
                        _PENDING_LOCKED, self.batch_size
                    )
                ]
                sent, error = await self._publish(rows)
                if sent:
                    seqs = [seq for seq, _ in rows[:sent]]
                    await conn.execute(_MARK_PUBLISHED, datetime.now(UTC), seqs)
                if error is not None:
                    await conn.execute(_COUNT_FAILED, rows[sent][0])
        else:
            # SQLite is the embedded default: one process, one relay per database. Its write
            # lock must not be held while in-process consumers write to the other services'
            # databases, or two relays could wait on each other.
            async with self.db.sessions() as session:
                rows = await self._pending(session)
            sent, error = await self._publish(rows)
            if rows:
                async with self.db.transaction() as session:
                    await self._mark(session, rows, sent, error)
        self.metrics.events_published.inc(sent)
        if error is not None:
            raise error
        return sent

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The running relay's own connection: taking one from the pool would queue it
        behind every request in flight, and the outbox would fall behind under load."""
        if not self._own_connection:
            async with self.db.raw() as conn:
                yield conn
            return
        if self._conn is None or self._conn.is_closed():
            self._conn = await self.db.connect()
        yield self._conn

    async def _pending(self, session: AsyncSession) -> list[tuple[int, Outgoing]]:
        query = (
            sa.select(outbox.c.seq, outbox.c.event_type, outbox.c.subject, outbox.c.payload)
            .where(outbox.c.published_at.is_(None))
            .order_by(outbox.c.seq)
            .limit(self.batch_size)
        )
        return [
            (seq, Outgoing(event_type, subject, payload))
            for seq, event_type, subject, payload in await session.execute(query)
        ]

    async def _publish(self, rows: list[tuple[int, Outgoing]]) -> tuple[int, BaseException | None]:
        if not rows:
            return 0, None
        try:
            # The stored bytes go out as they are: no parsing, no re-serialising.
            return await self.bus.publish_batch([event for _, event in rows]), None
        except PublishFailed as failure:
            return failure.sent, failure.__cause__ or failure
        except Exception as failure:  # the bus failed before anything went out
            return 0, failure

    @staticmethod
    async def _mark(
        session: AsyncSession,
        rows: list[tuple[int, Outgoing]],
        sent: int,
        error: BaseException | None,
    ) -> None:
        """Mark what did go out, even when the rest failed; count the failed attempt."""
        if sent:
            await session.execute(
                outbox.update()
                .where(outbox.c.seq.in_([seq for seq, _ in rows[:sent]]))
                .values(published_at=datetime.now(UTC))
            )
        if error is not None:
            await session.execute(
                outbox.update()
                .where(outbox.c.seq == rows[sent][0])
                .values(attempts=outbox.c.attempts + 1)
            )

    async def backlog(self) -> int:
        if self.db.is_postgres:
            async with self._connection() as conn:
                return int(await conn.fetchval(_BACKLOG))
        async with self.db.sessions() as session:
            count = await session.scalar(
                sa.select(sa.func.count())
                .select_from(outbox)
                .where(outbox.c.published_at.is_(None))
            )
        return int(count or 0)

    async def _refresh_backlog(self) -> None:
        now = time.monotonic()
        if now - self._backlog_at >= self.backlog_interval:
            self._backlog_at = now
            self.metrics.outbox_backlog.set(await self.backlog())

    async def run(self) -> None:
        self._own_connection = True
        try:
            await self._loop()
        finally:
            self._own_connection = False
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

    async def _loop(self) -> None:
        backoff = self.poll_interval
        while True:
            # Cleared before the batch, so a commit during it triggers another pass.
            self._wake.clear()
            try:
                sent = await self.run_once()
                await self._refresh_backlog()
                backoff = self.poll_interval
                if sent == self.batch_size:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                self.metrics.relay_failures.inc()
                backoff = min(backoff * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
                # Woken by a commit: let the next ones gather, so that one pass (one
                # transaction, one broker round trip) carries many events, not one or two.
                await asyncio.sleep(self.linger)

    def start(self) -> None:
        _relays.add(self)
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        _relays.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
