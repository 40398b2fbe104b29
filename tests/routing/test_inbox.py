"""Teams, the inbox's filters and cursor (R26, R28), and periodic digests (R28)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from guichet_plumbing import tables
from guichet_plumbing.auth import Role
from guichet_plumbing.bus import InProcessBus
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.inbox import idempotent
from guichet_plumbing.observability import ServiceMetrics
from guichet_routing import repository, service
from guichet_routing.app import create_app
from guichet_routing.models import assignments
from guichet_routing.repository import InboxFilter
from guichet_routing.schemas import ServiceSettingsWrite
from guichet_routing.settings import RoutingSettings
from tests.identity import admin, agent, bearer, handler, staff
from tests.support import received_event, serve

ADMIVILLE = {"tenant": "admiville"}
POTHOLES_RULES = {
    "default_service": "accueil",
    "rules": [
        {
            "name": "Nids-de-poule",
            "conditions": {"procedures": ["signalement-voirie"]},
            "service": "voirie",
            "team": "nids-de-poule",
        }
    ],
}


@pytest.fixture
async def api(data_dir: Path) -> AsyncIterator[tuple[httpx.AsyncClient, InProcessBus]]:
    bus = InProcessBus()
    app = create_app(RoutingSettings(data_dir=data_dir), bus=bus)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        yield client, bus


async def test_r28_rule_routes_to_a_team_of_the_competent_service(
    api: tuple[httpx.AsyncClient, InProcessBus],
) -> None:
    client, bus = api
    refused = await client.put("/v1/rules", params=ADMIVILLE, json=POTHOLES_RULES, headers=admin())
    assert refused.status_code == 422
    assert [p["name"] for p in refused.json()["invalid-params"]] == ["rules[0].team"]
    nowhere = await client.put(
        "/v1/services/piscine/teams/bassin",
        params=ADMIVILLE,
        json={"name": "Bassin"},
        headers=admin(),
    )
    assert nowhere.status_code == 404

    # A service head declares their own service's teams, not another's.
    other_head = await client.put(
        "/v1/services/voirie/teams/nids-de-poule",
        params=ADMIVILLE,
        json={"name": "Équipe nids-de-poule"},
        headers=bearer(agent(Role.service_head, services=("accueil",))),
    )
    assert other_head.status_code == 403
    team = await client.put(
        "/v1/services/voirie/teams/nids-de-poule",
        params=ADMIVILLE,
        json={"name": "Équipe nids-de-poule"},
        headers=bearer(agent(Role.service_head, services=("voirie",))),
    )
    assert team.status_code == 204
    saved = await client.put("/v1/rules", params=ADMIVILLE, json=POTHOLES_RULES, headers=admin())
    assert saved.status_code == 200, saved.text
    assert saved.json()["teams"] == [
        {"service": "voirie", "code": "nids-de-poule", "name": "Équipe nids-de-poule"}
    ]
    pothole = received_event("signalement-voirie")
    await bus.publish(pothole)
    await bus.publish(received_event("reservation-salle"))

    voirie = handler("voirie")
    by_team = await client.get(
        "/v1/inbox",
        params={**ADMIVILLE, "service": "voirie", "team": "nids-de-poule"},
        headers=voirie,
    )
    assert [i["request_id"] for i in by_team.json()["items"]] == [pothole.subject]
    assert by_team.json()["items"][0]["team"] == "nids-de-poule"
    unknown = await client.get(
        "/v1/inbox",
        params={**ADMIVILLE, "service": "accueil", "team": "nids-de-poule"},
        headers=staff(),
    )
    assert unknown.status_code == 404
    # R21: a team's inbox is still its service's, closed to the other services' agents.
    elsewhere = await client.get(
        "/v1/inbox",
        params={**ADMIVILLE, "service": "voirie", "team": "nids-de-poule"},
        headers=handler("accueil"),
    )
    assert elsewhere.status_code == 403
    followed = await client.get(f"/v1/requests/{pothole.subject}", headers=voirie)
    assert followed.json()["team"] == "nids-de-poule"


async def test_r26_assigned_to_me_needs_to_know_who_i_am(
    api: tuple[httpx.AsyncClient, InProcessBus],
) -> None:
    client, bus = api
    mine, theirs = received_event(), received_event()
    for event in (mine, theirs):
        await bus.publish(event)
    # Two agents of the service handling both requests; "me" is the token's subject.
    seventeen = bearer(agent(Role.case_handler, services=("accueil",), subject="agent-17"))
    four = bearer(agent(Role.case_handler, services=("accueil",), subject="agent-4"))
    for request, to in ((mine, "agent-17"), (theirs, "agent-4")):
        assigned = await client.put(
            f"/v1/requests/{request.subject}/agent", json={"agent": to}, headers=seventeen
        )
        assert assigned.status_code == 200, assigned.text
    for headers, expected in ((seventeen, mine), (four, theirs)):
        page = await client.get("/v1/inbox", params={**ADMIVILLE, "mine": "true"}, headers=headers)
        assert [i["request_id"] for i in page.json()["items"]] == [expected.subject]
    # A header cannot say who I am: only the token does.
    spoofed = await client.get(
        "/v1/inbox",
        params={**ADMIVILLE, "mine": "true"},
        headers={**four, "X-Agent-Id": "agent-17"},
    )
    assert [i["request_id"] for i in spoofed.json()["items"]] == [theirs.subject]
    anonymous = await client.get("/v1/inbox", params={**ADMIVILLE, "mine": "true"})
    assert anonymous.status_code == 401


async def dispatch(db: Database, event: Envelope) -> None:
    handle = idempotent(db, "routing.dispatch", service.on_request_received, ServiceMetrics("t"))
    await handle(event)


async def test_r26_cursor_is_stable_while_requests_keep_arriving(routing_db: Database) -> None:
    start = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    first = [received_event(received_at=start + timedelta(minutes=i)) for i in range(6)]
    for event in first:
        await dispatch(routing_db, event)
    where = InboxFilter("admiville", service="accueil")
    page = await service.inbox(routing_db, where, cursor=None, limit=4)
    # Newer requests arrive (and one received earlier, entered late by an agent) between pages.
    late = received_event(received_at=start - timedelta(days=1))
    for event in [received_event(received_at=start + timedelta(hours=1)), late]:
        await dispatch(routing_db, event)
    rest = await service.inbox(routing_db, where, cursor=page.next_cursor, limit=4)
    seen = [str(i.request_id) for i in page.items + rest.items]
    newest_first = [e.subject for e in reversed(first)]
    assert seen == [*newest_first, late.subject], "no duplicate, no gap, newest first"
    assert rest.next_cursor is None


def test_r28_digest_instant_in_the_tenant_time_zone() -> None:
    # Paris is UTC+1 in winter: 8:00 there is 7:00 UTC.
    assert service.digest_slot(
        datetime(2026, 3, 3, 7, 0, tzinfo=UTC), "Europe/Paris", "daily", "08:00"
    ) == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
    assert service.digest_slot(
        datetime(2026, 3, 3, 6, 59, tzinfo=UTC), "Europe/Paris", "daily", "08:00"
    ) == datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    # Summer time starts on Sunday 29 March 2026: 8:00 is then 6:00 UTC.
    assert service.digest_slot(
        datetime(2026, 3, 30, 6, 30, tzinfo=UTC), "Europe/Paris", "daily", "08:00"
    ) == datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    # Wednesday 4 March: the weekly digest was Monday 2 March at 8:00 (7:00 UTC).
    assert service.digest_slot(
        datetime(2026, 3, 4, 12, 0, tzinfo=UTC), "Europe/Paris", "weekly", "08:00"
    ) == datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    # Martinique is UTC−4 all year: at 7:00 there, today's 7:30 digest is yet to come.
    assert service.digest_slot(
        datetime(2026, 3, 3, 11, 0, tzinfo=UTC), "America/Martinique", "daily", "07:30"
    ) == datetime(2026, 3, 2, 11, 30, tzinfo=UTC)


async def digests(db: Database) -> list[dict[str, Any]]:
    async with db.sessions() as session:
        payloads = await session.scalars(
            sa.select(tables.outbox.c.payload).order_by(tables.outbox.c.seq)
        )
        found = [Envelope.from_bytes(p) for p in payloads]
    return [e.data for e in found if e.type == "routing.service.digest.v1"]


async def test_r28_service_consulting_periodically_gets_one_digest_per_period(
    routing_db: Database,
) -> None:
    await service.configure_service(
        routing_db,
        "admiville",
        "voirie",
        ServiceSettingsWrite.model_validate(
            {
                "email": "voirie@admiville.example",
                "commitment_days": 8,
                "alert_mode": "digest",
                "digest_time": "08:00",
            }
        ),
        # Switched to digests on 2 March at 8:30 (Paris): the first one is the next day's.
        now=datetime(2026, 3, 2, 7, 30, tzinfo=UTC),
    )
    arrived = {}
    for name in ("before", "in_period", "just_before", "after"):
        event = received_event("signalement-voirie")
        await dispatch(routing_db, event)
        arrived[name] = uuid.UUID(event.subject)
    # Routed at these instants (Paris is UTC+1): 1 March 9:00, 2 March 8:30, 3 March 7:59
    # and 8:01 local; the road service answers within 8 days of routing.
    routed = {
        "before": datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
        "in_period": datetime(2026, 3, 2, 7, 30, tzinfo=UTC),
        "just_before": datetime(2026, 3, 3, 6, 59, tzinfo=UTC),
        "after": datetime(2026, 3, 3, 7, 1, tzinfo=UTC),
    }
    async with routing_db.transaction() as session:
        for name, at in routed.items():
            await session.execute(
                assignments.update()
                .where(assignments.c.request_id == arrived[name])
                .values(assigned_at=at, due_at=at + timedelta(days=8))
            )
    async with routing_db.sessions() as session:
        alerts = await session.scalar(
            sa.select(sa.func.count())
            .select_from(tables.outbox)
            .where(tables.outbox.c.event_type == "routing.service.alerted.v1")
        )
    assert alerts == 0, "a digest service is not alerted at each request"

    assert await service.send_digests(routing_db, now=datetime(2026, 3, 3, 6, 59, tzinfo=UTC)) == 0
    at_eight = datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
    assert await service.send_digests(routing_db, now=at_eight) == 1
    assert await service.send_digests(routing_db, now=at_eight + timedelta(hours=3)) == 0
    [digest] = await digests(routing_db)
    assert digest["period_start"] == "2026-03-02T07:00:00Z"
    assert digest["period_end"] == "2026-03-03T07:00:00Z"
    assert [i["request_id"] for i in digest["new"]] == [
        str(arrived["in_period"]),
        str(arrived["just_before"]),
    ]
    assert digest["new_total"] == 2
    # The earliest is due 9 March 8:00 UTC: none is late on the 3rd.
    assert digest["overdue_total"] == 0
    assert digest["service_email"] == "voirie@admiville.example"

    # A week later every one of them is past its 8 days, the next digest lists them.
    assert await service.send_digests(routing_db, now=datetime(2026, 3, 11, 7, 0, tzinfo=UTC)) == 1
    [_, later] = await digests(routing_db)
    assert later["period_start"] == "2026-03-03T07:00:00Z", "from the last digest sent"
    assert [i["request_id"] for i in later["new"]] == [str(arrived["after"])]
    assert later["overdue_total"] == 3
    assert [i["request_id"] for i in later["overdue"]] == [
        str(arrived[name]) for name in ("before", "in_period", "just_before")
    ], "most late first"


async def test_r28_a_switch_to_digests_beside_a_switch_away_starts_at_the_next_slot(
    routing_db: Database,
) -> None:
    """Two heads of service change the alert mode at once: one to immediate alerts (still
    committing), one back to digests. Read as committed, the second is a switch to
    digests: they start at the next slot, not with a digest of a week already past."""
    digest = ServiceSettingsWrite.model_validate(
        {"email": "voirie@admiville.example", "alert_mode": "digest", "digest_time": "08:00"}
    )
    first_switch = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)  # Monday 8:30 in Paris
    await service.configure_service(routing_db, "admiville", "voirie", digest, now=first_switch)
    back = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # Tuesday of the next week, 10:00
    async with routing_db.transaction() as session:
        await repository.get_service(session, "admiville", "voirie", for_update=True)
        await repository.update_service(session, "admiville", "voirie", {"alert_mode": "immediate"})
        switching = asyncio.create_task(
            service.configure_service(routing_db, "admiville", "voirie", digest, now=back)
        )
        await asyncio.sleep(0.5)  # long enough to read the service and wait on its row
    await switching
    assert await service.send_digests(routing_db, now=back + timedelta(minutes=1)) == 0
    # The next one is Wednesday's at 8:00 (7:00 UTC), for the day since Tuesday's slot.
    assert await service.send_digests(routing_db, now=datetime(2026, 3, 11, 7, 0, tzinfo=UTC)) == 1
