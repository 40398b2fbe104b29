"""Nothing lost, nothing doubled: the outbox relay and idempotent consumers on real components."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from guichet_plumbing import tables
from guichet_plumbing.bus import KafkaBus, Outgoing
from guichet_plumbing.db import Database
from guichet_plumbing.localinfra import LocalBroker
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.outbox import Relay, stage
from guichet_routing.app import create_app as create_routing
from guichet_routing.settings import RoutingSettings
from tests.identity import staff
from tests.plumbing.kafka_tools import read_topic
from tests.support import eventually, received_event, serve


class ProcessDied(Exception):
    """Stands for the relay's process being killed at that exact point."""


class DiesBeforePublish:
    async def publish_batch(self, events: list[Outgoing]) -> int:
        raise ProcessDied


class DiesAfterPublish:
    """The broker has the event, but the process dies before marking the row published."""

    def __init__(self, inner: KafkaBus) -> None:
        self.inner = inner

    async def publish_batch(self, events: list[Outgoing]) -> int:
        await self.inner.publish_batch(events)
        raise ProcessDied


async def producer_db(url: str) -> Database:
    db = Database(url)
    await db.create_all(tables.metadata)
    return db


async def started_bus(kafka: LocalBroker, prefix: str) -> KafkaBus:
    bus = KafkaBus(kafka.bootstrap_servers, topic_prefix=prefix)
    bus.declare(["intake.request.received.v1"])
    await bus.start()
    return bus


async def unpublished(db: Database) -> int:
    async with db.sessions() as session:
        return int(
            await session.scalar(
                sa.select(sa.func.count())
                .select_from(tables.outbox)
                .where(tables.outbox.c.published_at.is_(None))
            )
            or 0
        )


async def test_relay_killed_between_commit_and_publish_publishes_once_on_restart(
    pg_database: Callable[[str], str],
    kafka: LocalBroker,
    topic_prefix: str,
) -> None:
    db = await producer_db(pg_database("producer"))
    event = received_event(channel="counter")
    async with db.transaction() as session:
        await stage(session, event)

    with pytest.raises(ProcessDied):
        await Relay(db, DiesBeforePublish(), ServiceMetrics("t")).run_once()  # type: ignore[arg-type]
    assert await unpublished(db) == 1, "the committed event must survive the crash"

    bus = await started_bus(kafka, topic_prefix)
    try:
        restarted = Relay(db, bus, ServiceMetrics("t"))
        assert await restarted.run_once() == 1
        assert await restarted.run_once() == 0, "a second pass must not publish again"
    finally:
        await bus.stop()
    on_wire = await read_topic(kafka.bootstrap_servers, topic_prefix + event.type)
    assert [e.id for e in on_wire] == [event.id]
    assert await unpublished(db) == 0
    await db.dispose()


async def test_event_redelivered_after_crash_has_one_effect(
    pg_database: Callable[[str], str],
    kafka: LocalBroker,
    topic_prefix: str,
    data_dir: Path,
) -> None:
    """Crash after publish, before the mark: the event goes out twice; routing acts once."""
    db = await producer_db(pg_database("producer"))
    event = received_event(channel="counter")
    async with db.transaction() as session:
        await stage(session, event)

    bus = await started_bus(kafka, topic_prefix)
    try:
        with pytest.raises(ProcessDied):
            await Relay(db, DiesAfterPublish(bus), ServiceMetrics("t")).run_once()  # type: ignore[arg-type]
        assert await Relay(db, bus, ServiceMetrics("t")).run_once() == 1
    finally:
        await bus.stop()
    on_wire = await read_topic(kafka.bootstrap_servers, topic_prefix + event.type)
    assert [e.id for e in on_wire] == [event.id, event.id], "at-least-once: two copies sent"

    routing = create_routing(
        RoutingSettings(
            database_url=pg_database("routing"),
            bus="kafka",
            data_dir=data_dir,
            kafka_bootstrap_servers=kafka.bootstrap_servers,
            kafka_topic_prefix=topic_prefix,
        )
    )
    async with serve(routing) as base, httpx.AsyncClient(base_url=base, headers=staff()) as client:

        async def consumed_twice() -> bool:
            metrics = (await client.get("/metrics")).text
            return 'outcome="applied"} 1.0' in metrics and 'outcome="duplicate"} 1.0' in metrics

        await eventually(consumed_twice, timeout=30, what="both copies consumed")
        inbox = (await client.get("/v1/inbox", params={"tenant": "admiville"})).json()
    assert [item["request_id"] for item in inbox["items"]] == [str(event.subject)]
    assigned = await read_topic(
        kafka.bootstrap_servers, topic_prefix + "routing.request.assigned.v1"
    )
    assert len(assigned) == 1, "one effect, so one event downstream"
    await db.dispose()


async def test_running_relay_keeps_publishing_while_requests_hold_every_pooled_connection(
    pg_database: Callable[[str], str],
    kafka: LocalBroker,
    topic_prefix: str,
) -> None:
    """Under load every pooled connection serves a request: the relay has its own, or
    the outbox would fall behind for as long as the load lasts."""
    db = await producer_db(pg_database("producer"))
    bus = await started_bus(kafka, topic_prefix)
    relay = Relay(db, bus, ServiceMetrics("t"), poll_interval=0.1)
    async with contextlib.AsyncExitStack() as busy:
        for _ in range(db.pool_size):
            await busy.enter_async_context(db.raw())
        relay.start()
        try:
            event = received_event(channel="counter")
            async with db.transaction() as session:
                await stage(session, event)

            async def published() -> bool:
                return await unpublished(db) == 0

            await eventually(published, timeout=10, what="event published")
        finally:
            await relay.stop()
            await bus.stop()
    on_wire = await read_topic(kafka.bootstrap_servers, topic_prefix + event.type)
    assert [e.id for e in on_wire] == [event.id]
    await db.dispose()
