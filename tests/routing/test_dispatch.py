"""Routing a request to the competent service, and the inbox across channels (R26, R28)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from guichet_plumbing import tables
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.inbox import idempotent
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.problems import Problem
from guichet_routing import service
from guichet_routing.models import assignments
from guichet_routing.repository import InboxFilter
from guichet_routing.rules import Rule, Sample, decide
from tests.support import received_event


def received(
    procedure: str = "reservation-salle", channel: str = "web", at: datetime | None = None
) -> Envelope:
    return received_event(procedure, channel=channel, received_at=at)


def test_r28_first_matching_rule_wins_else_default_service() -> None:
    rules = [
        Rule(1, "a1", "s1", procedures=frozenset({"a"})),
        Rule(2, "a2", "s2", procedures=frozenset({"a"})),
        Rule(3, "b", "s3", procedures=frozenset({"b"})),
    ]
    assert decide(rules, "accueil", Sample("a", "web"), []).service == "s1"
    assert decide(rules, "accueil", Sample("b", "web"), []).service == "s3"
    fallback = decide(rules, "accueil", Sample("inconnue", "web"), [])
    assert fallback.service == "accueil"
    assert "défaut" in fallback.explanation()


async def test_r28_request_routed_straight_to_competent_service(routing_db: Database) -> None:
    handle = idempotent(
        routing_db, "routing.dispatch", service.on_request_received, ServiceMetrics("t")
    )
    event = received("signalement-voirie", channel="sms")
    await handle(event)
    inbox = await service.inbox(
        routing_db, InboxFilter("admiville", service="voirie"), cursor=None, limit=10
    )
    [item] = inbox.items
    assert item.service == "Centre technique municipal, service de la voirie"
    assert item.channel == "sms"
    async with routing_db.sessions() as session:
        [payload] = await session.scalars(sa.select(tables.outbox.c.payload))
    out = Envelope.from_bytes(payload)
    assert out.type == "routing.request.assigned.v1" and out.data["service_code"] == "voirie"


async def test_redelivered_event_has_one_effect(routing_db: Database) -> None:
    handle = idempotent(
        routing_db, "routing.dispatch", service.on_request_received, ServiceMetrics("t")
    )
    event = received()
    await handle(event)
    await handle(event)
    async with routing_db.sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(assignments)) == 1
        assert await session.scalar(sa.select(sa.func.count()).select_from(tables.outbox)) == 1


async def test_r26_one_inbox_for_every_channel_paged_by_cursor(routing_db: Database) -> None:
    handle = idempotent(
        routing_db, "routing.dispatch", service.on_request_received, ServiceMetrics("t")
    )
    start = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    channels = ["web", "email", "phone", "counter", "mail", "sms"]
    sent = []
    for i in range(13):
        # Two requests share each instant: the id breaks the tie, deterministically.
        event = received(channel=channels[i % 6], at=start + timedelta(minutes=i // 2))
        sent.append(event)
        await handle(event)
    seen: list[str] = []
    cursor = None
    while True:
        page = await service.inbox(
            routing_db, InboxFilter("admiville", service="accueil"), cursor=cursor, limit=5
        )
        seen += [str(i.request_id) for i in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    expected = sorted(sent, key=lambda e: (e.data["received_at"], e.subject), reverse=True)
    assert seen == [e.subject for e in expected]
    only_sms = await service.inbox(
        routing_db, InboxFilter("admiville", channel="sms"), cursor=None, limit=50
    )
    assert {i.channel for i in only_sms.items} == {"sms"}
    assert len(only_sms.items) == 2
    assert page.counts == {"recue": 13}, "counts per status under the same filters"


async def test_inbox_refuses_unknown_tenant_service_and_forged_cursor(
    routing_db: Database,
) -> None:
    for where, cursor, status in (
        (InboxFilter("ailleurs"), None, 404),
        (InboxFilter("admiville", service="nulle"), None, 404),
        (InboxFilter("admiville"), "pas-un-curseur", 400),
    ):
        with pytest.raises(Problem) as refused:
            await service.inbox(routing_db, where, cursor=cursor, limit=10)
        assert refused.value.status == status
