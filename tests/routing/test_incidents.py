"""R30: repeated reports of one problem at one place become one incident: one alert to
the service, every reporter linked, all closed (and told) together."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from guichet_plumbing import tables
from guichet_plumbing.auth import SYSTEM, Role
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.inbox import idempotent
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.problems import Problem
from guichet_routing import incidents, repository, service, workflows
from guichet_routing.models import assignments, reports
from guichet_routing.models import incidents as incidents_table
from guichet_routing.repository import InboxFilter, ReportFilter
from guichet_routing.schemas import IncidentPolicyWrite, ServiceSettingsWrite, TransitionCreate
from tests.identity import agent
from tests.support import received_event

# Place de la Mairie, Admiville (any point does: distances are relative).
LAT, LON = 48.8566, 2.3522
# At this latitude one degree is 111 195 m north-south (pi x 6 371 008.8 m / 180) and
# 111 195 x cos(48.8566°) = 73 162 m east-west.
M_LAT = 1 / 111_195.08
M_LON = 1 / 73_162.0
MONDAY = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def report(
    north_m: float = 0,
    east_m: float = 0,
    *,
    at: datetime = MONDAY,
    procedure: str = "signalement-voirie",
    kind: str = "signalement",
) -> Envelope:
    return received_event(
        procedure,
        channel="web",
        procedure_kind=kind,
        received_at=at,
        location={"latitude": LAT + north_m * M_LAT, "longitude": LON + east_m * M_LON},
        payload={"description": "Nid-de-poule devant le n° 12"},
    )


async def dispatch(db: Database, *events: Envelope) -> None:
    handle = idempotent(db, "routing.dispatch", service.on_request_received, ServiceMetrics("t"))
    for event in events:
        await handle(event)


async def alerted(db: Database) -> list[Envelope]:
    return [e for e in await staged(db) if e.type == "routing.service.alerted.v1"]


async def staged(db: Database) -> list[Envelope]:
    async with db.sessions() as session:
        rows = await session.scalars(sa.select(tables.outbox.c.payload))
        return [Envelope.from_bytes(p) for p in rows]


@pytest.fixture
async def db(routing_db: Database) -> Database:
    """The demo tenant, its road service asking for immediate alerts (R28)."""
    await service.configure_service(
        routing_db,
        "admiville",
        "voirie",
        ServiceSettingsWrite(email="voirie@admiville.example", alert_mode="immediate"),
    )
    return routing_db


def test_r30_haversine_and_bounding_box_hand_computed() -> None:
    # 0.00045° of latitude is 0.00045 x 111 195.08 = 50.04 m, whatever the longitude.
    assert incidents.distance_m(LAT, LON, LAT + 0.00045, LON) == pytest.approx(50.04, abs=0.01)
    # Paris (48.8566, 2.3522) to Lyon (45.7640, 4.8357): 391.5 km by the great circle.
    assert incidents.distance_m(48.8566, 2.3522, 45.7640, 4.8357) == pytest.approx(
        391_500, rel=0.002
    )
    south, west, north, east = incidents.bounding_box(LAT, LON, 50)
    assert (north - LAT) == pytest.approx(50 * M_LAT)
    assert (LAT - south) == pytest.approx(50 * M_LAT)
    # The box is wide enough at its northern edge, where a degree of longitude is shortest.
    assert incidents.distance_m(north, LON, north, east) > 49.999
    assert incidents.distance_m(LAT, west, LAT, LON) > 50


async def test_r30_ten_reports_one_alert(db: Database) -> None:
    """Ten reports within 50 m of one pothole: one incident, one alert, ten linked reporters."""
    offsets = [(0, 0), (10, 5), (-20, 12), (30, -25), (0, 40), (-35, -30), (45, 0), (5, -48)]
    offsets += [(-10, -10), (25, 25)]
    events = [report(n, e, at=MONDAY + timedelta(hours=i)) for i, (n, e) in enumerate(offsets)]
    await dispatch(db, *events)

    [alert] = await alerted(db)
    assert alert.data["request_id"] == events[0].subject
    assigned = [e for e in await staged(db) if e.type == "routing.request.assigned.v1"]
    assert len(assigned) == 10, "every reporter's request is still routed and acknowledged"

    inbox = await service.inbox(db, InboxFilter("admiville"), cursor=None, limit=50)
    [item] = inbox.items
    assert str(item.request_id) == events[0].subject
    assert item.reporters == 10
    assert inbox.counts == {"recue": 1}
    everything = await service.inbox(
        db, InboxFilter("admiville", duplicates=True), cursor=None, limit=50
    )
    assert len(everything.items) == 10
    assert {i.incident_id for i in everything.items} == {item.incident_id}


async def test_r30_report_beyond_the_radius_is_a_new_incident(db: Database) -> None:
    # 51 m north, then 49 m east of the first: only the second joins.
    await dispatch(db, report(), report(51, 0), report(0, 49))
    assert len(await alerted(db)) == 2
    inbox = await service.inbox(db, InboxFilter("admiville"), cursor=None, limit=50)
    assert sorted(i.reporters or 0 for i in inbox.items) == [1, 2]


async def test_r30_other_category_or_a_demande_is_never_merged(db: Database) -> None:
    await dispatch(
        db,
        report(),
        report(1, 1, procedure="eclairage-public"),
        # A located request calling for a decision keeps its own file, whatever its place.
        report(2, 2, procedure="occupation-voirie", kind="demande"),
    )
    async with db.sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(reports)) == 2
        assert (
            await session.scalar(
                sa.select(sa.func.count()).select_from(reports).where(reports.c.duplicate)
            )
            == 0
        )


async def test_r30_time_window_then_tenant_and_procedure_policies(db: Database) -> None:
    # Default window, 30 days: a report on 1 April (30 days after 2 March) still joins,
    # one on 2 April (31 days) opens a new incident.
    await dispatch(db, report(), report(at=datetime(2026, 4, 1, 8, 0, tzinfo=UTC)))
    assert len(await alerted(db)) == 1
    await dispatch(db, report(at=datetime(2026, 4, 2, 8, 1, tzinfo=UTC)))
    assert len(await alerted(db)) == 2

    # The collectivité narrows the radius to 20 m; the road reports keep 100 m.
    tenant_wide = await incidents.put_policy(
        db, "admiville", None, IncidentPolicyWrite(radius_m=20, window_days=30)
    )
    assert (tenant_wide.radius_m, tenant_wide.inherited) == (20, False)
    inherited = await incidents.get_policy(db, "admiville", "signalement-voirie")
    assert (inherited.radius_m, inherited.inherited) == (20, True)
    later = datetime(2026, 4, 3, 8, 0, tzinfo=UTC)
    await dispatch(db, report(30, 0, at=later))
    assert len(await alerted(db)) == 3, "30 m is beyond the tenant's 20 m"
    await incidents.put_policy(
        db, "admiville", "signalement-voirie", IncidentPolicyWrite(radius_m=100, window_days=30)
    )
    await dispatch(db, report(90, 0, at=later))
    assert len(await alerted(db)) == 3, "90 m is within the procedure's own 100 m"

    with pytest.raises(Problem) as unknown:
        await incidents.get_policy(db, "ailleurs", None)
    assert unknown.value.status == 404


async def test_r30_closing_the_incident_closes_every_report_and_tells_each(
    db: Database,
) -> None:
    events = [report(i, i, at=MONDAY + timedelta(minutes=i)) for i in range(4)]
    await dispatch(db, *events)
    first = uuid.UUID(events[0].subject)
    # An agent closes one duplicate on its own first: it stays closed, told once.
    voirie = agent(Role.case_handler, services=("voirie",), subject="agent.voirie")
    close = TransitionCreate(transition="cloturer")
    await service.fire(db, uuid.UUID(events[3].subject), close, voirie)
    await service.fire(db, first, close, voirie)

    async with db.sessions() as session:
        rows = (await session.execute(sa.select(assignments))).all()
    assert {r.status for r in rows} == {"traitee"}
    assert all(r.closed for r in rows)
    changes = [e for e in await staged(db) if e.type == "routing.request.status_changed.v1"]
    by_request: dict[str, int] = {}
    for change in changes:
        by_request[change.subject] = by_request.get(change.subject, 0) + 1
    assert by_request == {e.subject: 1 for e in events}, "one status event per reporter"
    closing = [c for c in changes if c.data["incident_id"] is not None]
    assert {c.subject for c in closing} == {e.subject for e in events[:3]}
    assert {c.data["reporters"] for c in closing} == {4}

    # The incident is closed: the next report at the same place opens a new one.
    await dispatch(db, report(at=MONDAY + timedelta(days=1)))
    assert len(await alerted(db)) == 2


async def test_r30_open311_listing_filters_on_both_databases(db: Database) -> None:
    events = [report(0, 0), report(5, 5, at=MONDAY + timedelta(hours=1))]
    await dispatch(db, *events)
    await service.fire(
        db, uuid.UUID(events[0].subject), TransitionCreate(transition="cloturer"), SYSTEM
    )
    async with db.sessions() as session:
        every = await repository.list_reports(session, ReportFilter("admiville"), 10)
        still_open = await repository.list_reports(
            session, ReportFilter("admiville", closed=False), 10
        )
        later = await repository.list_reports(
            session, ReportFilter("admiville", start=MONDAY + timedelta(minutes=30)), 10
        )
    assert [r.request_id for r in every] == [uuid.UUID(e.subject) for e in reversed(events)]
    assert every[0].reporters == 2
    assert every[0].description == "Nid-de-poule devant le n° 12"
    assert every[0].updated_at is not None
    assert still_open == []
    assert [r.request_id for r in later] == [uuid.UUID(events[1].subject)]


async def test_r30_reports_routed_at_the_same_time_open_one_incident(db: Database) -> None:
    """Consumers of several partitions route together: the tenant lock keeps one incident."""
    events = [report(i, -i) for i in range(6)]
    handle = idempotent(db, "routing.dispatch", service.on_request_received, ServiceMetrics("t"))
    await asyncio.gather(*(handle(e) for e in events))
    assert len(await alerted(db)) == 1
    inbox = await service.inbox(db, InboxFilter("admiville"), cursor=None, limit=50)
    assert [i.reporters for i in inbox.items] == [6]


@asynccontextmanager
async def closing_held_open(db: Database, lead: uuid.UUID) -> AsyncIterator[None]:
    """The incident's first report closed ("cloturer"), its transaction left open while
    the caller runs something beside it, committed on leaving."""
    async with db.transaction() as session:
        row = await repository.lock_assignment(session, lead)
        definition = await service._definition(session, row)
        move = workflows.transition(definition, "cloturer")
        assert move is not None
        await service._apply(
            session, row, definition, move, MONDAY + timedelta(hours=2), agent=None, comment=None
        )
        yield


async def test_r30_a_report_arriving_while_its_incident_closes_is_not_lost_in_it(
    db: Database,
) -> None:
    """A report 7 m away is routed while the agent's closing of the incident commits: it
    opens an incident of its own and its service is alerted, as if routed just after.
    Joined to the incident closing, it would stay open, hidden and never alerted."""
    first = report()
    await dispatch(db, first)
    late = report(7, 0, at=MONDAY + timedelta(hours=2))
    async with closing_held_open(db, uuid.UUID(first.subject)):
        routing = asyncio.create_task(dispatch(db, late))
        await asyncio.sleep(0.5)  # long enough to look for an open incident and wait
    await routing
    joined = await assignment_of(db, uuid.UUID(late.subject))
    assert not joined.duplicate
    assert len(await alerted(db)) == 2
    assert len(await open_incidents(db)) == 1


async def test_r30_an_incident_closing_while_a_report_joins_tells_every_reporter_the_count(
    db: Database,
) -> None:
    """The other way round: the report is joining when the closing starts. It is closed
    with the incident, and both reporters are told it was reported twice."""
    first = report()
    await dispatch(db, first)
    joining = report(7, 0, at=MONDAY + timedelta(hours=1))
    voirie = agent(Role.case_handler, services=("voirie",), subject="agent.voirie")
    async with db.transaction() as session:
        await service.on_request_received(session, joining)
        closing = asyncio.create_task(
            service.fire(
                db, uuid.UUID(first.subject), TransitionCreate(transition="cloturer"), voirie
            )
        )
        await asyncio.sleep(0.5)  # long enough to find the incident and wait on the report
    await closing
    changes = [e for e in await staged(db) if e.type == "routing.request.status_changed.v1"]
    told = {c.subject: c.data["reporters"] for c in changes if c.data["incident_id"]}
    assert told == {first.subject: 2, joining.subject: 2}
    assert (await assignment_of(db, uuid.UUID(joining.subject))).closed


async def test_r30_r12_a_failed_transfer_of_an_incident_brings_back_every_report_it_closed(
    db: Database,
) -> None:
    # Transferring the incident's first report closed the incident and every report
    # linked to it; intake could not make the transfer: all come back, the incident open.
    from tests.routing.test_automation import refusals, refused_transfer

    await transferring(db)
    sent = [report(i, i, at=MONDAY + timedelta(minutes=i)) for i in range(3)]
    await dispatch(db, *sent)
    lead = uuid.UUID(sent[0].subject)
    await service.fire(db, lead, TransitionCreate(transition="transmettre"), VOIRIE)
    await refusals(db)(refused_transfer(lead, MONDAY + timedelta(days=1)))
    async with db.sessions() as session:
        rows = (await session.execute(sa.select(assignments))).all()
    assert {(r.status, r.closed) for r in rows} == {("recue", False)}
    [incident] = await open_incidents(db)
    assert (incident.request_id, incident.reporters) == (lead, 3)
    # Closing it now closes the others again.
    await service.fire(db, lead, TransitionCreate(transition="cloturer"), VOIRIE)
    async with db.sessions() as session:
        rows = (await session.execute(sa.select(assignments))).all()
    assert {r.status for r in rows} == {"traitee"}


TRANSFERRING: dict[str, Any] = {
    "initial": "recue",
    "statuses": [
        {"code": "recue", "label": "Reçue", "phase": "qualification"},
        {"code": "traitee", "label": "Traitée", "phase": "delivery", "final": True},
        {"code": "transmise", "label": "Transmise", "phase": "delivery", "final": True},
    ],
    "transitions": [
        {
            "code": "transmettre",
            "label": "Transmettre",
            "from": ["recue"],
            "to": "transmise",
            "actions": [{"type": "transfer", "tenant": "metropole", "reason": "Voirie"}],
        },
        {"code": "cloturer", "label": "Clore", "from": ["recue"], "to": "traitee"},
    ],
}
VOIRIE = agent(Role.case_handler, services=("voirie",), subject="agent.voirie")


async def transferring(db: Database, circuit: dict[str, Any] = TRANSFERRING) -> None:
    from guichet_routing.schemas import WorkflowWrite

    await service.put_workflow(
        db, "admiville", "signalement-voirie", WorkflowWrite.model_validate(circuit)
    )


async def assignment_of(db: Database, request_id: uuid.UUID) -> Any:
    async with db.sessions() as session:
        query = sa.select(assignments).where(assignments.c.request_id == request_id)
        return (await session.execute(query)).one()


async def open_incidents(db: Database) -> list[Any]:
    async with db.sessions() as session:
        query = sa.select(incidents_table).where(incidents_table.c.closed.is_(False))
        return list((await session.execute(query)).all())


async def test_r30_r12_a_report_sent_on_by_its_own_transfer_stays_sent_on(db: Database) -> None:
    # The second report was transferred on its own (intake made it); the first report's
    # transfer then closed the incident, and failed: only what that transfer closed returns.
    from tests.routing.test_automation import refusals, refused_transfer

    await transferring(db)
    sent = [report(i, i, at=MONDAY + timedelta(minutes=i)) for i in range(2)]
    await dispatch(db, *sent)
    lead, other = (uuid.UUID(e.subject) for e in sent)
    await service.fire(db, other, TransitionCreate(transition="transmettre"), VOIRIE)
    await service.fire(db, lead, TransitionCreate(transition="transmettre"), VOIRIE)
    await refusals(db)(refused_transfer(lead, MONDAY + timedelta(days=1)))
    kept = await assignment_of(db, other)
    assert (kept.status, kept.closed) == ("transmise", True)
    assert (await assignment_of(db, lead)).status == "recue"


async def test_r30_r12_an_incident_opened_while_the_transfer_was_pending_joins_the_reopened(
    db: Database,
) -> None:
    # While the first report's transfer was pending (its incident closed), the same
    # pothole was reported again and opened an incident of its own. When the transfer
    # fails, one problem at one place is one incident again: the newer joins the older.
    from tests.routing.test_automation import refusals, refused_transfer

    await transferring(db)
    first = report(0, 0, at=MONDAY)
    await dispatch(db, first)
    lead = uuid.UUID(first.subject)
    await service.fire(db, lead, TransitionCreate(transition="transmettre"), VOIRIE)
    again = report(1, 1, at=MONDAY + timedelta(hours=1))
    await dispatch(db, again)
    assert len(await alerted(db)) == 2, "a new incident, its service alerted"
    await refusals(db)(refused_transfer(lead, MONDAY + timedelta(days=1)))
    [incident] = await open_incidents(db)
    assert (incident.request_id, incident.reporters) == (lead, 2)
    joined = await assignment_of(db, uuid.UUID(again.subject))
    assert (joined.duplicate, joined.closed) == (True, False)
    # Closing the incident closes both reports, as for any incident.
    await service.fire(db, lead, TransitionCreate(transition="cloturer"), VOIRIE)
    assert (await assignment_of(db, uuid.UUID(again.subject))).status == "traitee"


async def test_r30_r12_a_transfer_from_an_answered_report_does_not_reopen_its_incident(
    db: Database,
) -> None:
    # A circuit may transfer from a final status: the report was answered (its incident
    # closed), then sent on, and that failed. The answer stands, the incident stays closed.
    import copy

    from tests.routing.test_automation import refusals, refused_transfer

    circuit = copy.deepcopy(TRANSFERRING)
    circuit["transitions"][0]["from"] = ["recue", "traitee"]
    await transferring(db, circuit)
    first = report(0, 0, at=MONDAY)
    await dispatch(db, first)
    lead = uuid.UUID(first.subject)
    await service.fire(db, lead, TransitionCreate(transition="cloturer"), VOIRIE)
    await service.fire(db, lead, TransitionCreate(transition="transmettre"), VOIRIE)
    await refusals(db)(refused_transfer(lead, MONDAY + timedelta(days=1)))
    assert await open_incidents(db) == []
    assert (await assignment_of(db, lead)).status == "traitee"


SEND = TransitionCreate(transition="transmettre")


def asking_for_a_photo(then: str) -> dict[str, Any]:
    """Reports asked for a photo, which moves them on to `then`; without one for 30 days,
    closed; transferable while waiting for it."""
    return {
        "initial": "recue",
        "statuses": [
            {"code": "recue", "label": "Reçue", "phase": "qualification"},
            {"code": "attente", "label": "En attente de vos pièces", "phase": "processing"},
            {"code": "instruction", "label": "En cours", "phase": "processing"},
            {"code": "classee", "label": "Classée", "phase": "delivery", "final": True},
            {"code": "transmise", "label": "Transmise", "phase": "delivery", "final": True},
        ],
        "transitions": [
            {
                "code": "demander_pieces",
                "label": "Demander une photo",
                "from": ["recue"],
                "to": "attente",
                "actions": [{"type": "request_pieces", "pieces": ["Photo"], "due_in_days": 15}],
            },
            {
                "code": "pieces_recues",
                "label": "Pièces reçues",
                "from": ["attente"],
                "to": then,
                "automatic": {"on": "pieces_received"},
            },
            {
                "code": "classer",
                "label": "Classer faute de pièces",
                "from": ["attente"],
                "to": "classee",
                "automatic": {"after": {"days": 30}},
            },
            {"code": "instruire", "label": "Instruire", "from": ["recue"], "to": "instruction"},
            {"code": "cloturer", "label": "Clore", "from": ["instruction"], "to": "classee"},
            {
                "code": "transmettre",
                "label": "Transmettre",
                "from": ["recue", "attente"],
                "to": "transmise",
                "actions": [{"type": "transfer", "tenant": "metropole", "reason": "Voirie"}],
            },
        ],
    }


async def two_reports_asked_for_a_photo_then_sent_on(
    db: Database, then: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """Two reports of one pothole, both asked for a photo; the first is transferred,
    which closes the incident and the second. Returns (first, second)."""
    await transferring(db, asking_for_a_photo(then=then))
    sent = [report(0, 0, at=MONDAY), report(1, 1, at=MONDAY + timedelta(minutes=1))]
    await dispatch(db, *sent)
    lead, other = (uuid.UUID(e.subject) for e in sent)
    for request_id in (lead, other):
        await service.fire(db, request_id, TransitionCreate(transition="demander_pieces"), SYSTEM)
    await service.fire(db, lead, SEND, VOIRIE)
    return lead, other


@pytest.mark.parametrize("first_back", ["older", "newer"])
async def test_r30_r12_two_incidents_of_one_pothole_back_from_failed_transfers_are_one(
    db: Database, first_back: str
) -> None:
    # a opened A and was transferred (A closed); b, the same pothole an hour later, opened
    # B and was transferred too. Both transfers fail, in either order: one incident, the
    # oldest, the other's reports its duplicates.
    from tests.routing.test_automation import refusals, refused_transfer

    await transferring(db)
    first, second = report(0, 0, at=MONDAY), report(1, 1, at=MONDAY + timedelta(hours=1))
    await dispatch(db, first)
    a = uuid.UUID(first.subject)
    await service.fire(db, a, SEND, VOIRIE)
    await dispatch(db, second)
    b = uuid.UUID(second.subject)
    await service.fire(db, b, SEND, VOIRIE)
    order = [a, b] if first_back == "older" else [b, a]
    for day, lead in enumerate(order, start=1):
        await refusals(db)(refused_transfer(lead, MONDAY + timedelta(days=day)))
    [incident] = await open_incidents(db)
    assert (incident.request_id, incident.reporters) == (a, 2)
    assert (await assignment_of(db, b)).duplicate


async def test_r30_r12_a_failed_transfer_merges_no_incident_outside_the_time_window(
    db: Database,
) -> None:
    # Window 30 days: a report 40 days after the first would not have joined its incident
    # even open; the first one's failed transfer does not merge them either.
    from tests.routing.test_automation import refusals, refused_transfer

    await transferring(db)
    first = report(0, 0, at=MONDAY)
    await dispatch(db, first)
    a = uuid.UUID(first.subject)
    await service.fire(db, a, SEND, VOIRIE)
    later = report(1, 1, at=MONDAY + timedelta(days=40))
    await dispatch(db, later)
    await refusals(db)(refused_transfer(a, MONDAY + timedelta(days=41)))
    assert not (await assignment_of(db, uuid.UUID(later.subject))).duplicate
    assert len(await open_incidents(db)) == 2


async def test_r30_r12_a_report_closed_with_its_incident_is_closed_in_intake_too(
    db: Database,
) -> None:
    # Only the first report is transferred: intake must close the others rather than
    # wait for a transfer of their own that never comes.
    await transferring(db)
    sent = [report(0, 0, at=MONDAY), report(1, 1, at=MONDAY + timedelta(minutes=1))]
    await dispatch(db, *sent)
    lead, other = (uuid.UUID(e.subject) for e in sent)
    await service.fire(db, lead, SEND, VOIRIE)
    changes = {
        e.subject: e.data["actions"]
        for e in await staged(db)
        if e.type == "routing.request.status_changed.v1"
    }
    assert "transfer" in changes[str(lead)]
    assert "transfer" not in changes[str(other)]


async def test_r30_r12_a_report_whose_photo_came_during_the_transfer_is_not_closed_for_want_of_it(
    db: Database,
) -> None:
    # Both reporters were asked for a photo; the first report's transfer closed both; the
    # second reporter's photo came meanwhile. Back after the failure, that report moves
    # on as its pieces came, instead of waiting to be closed for want of them.
    from tests.routing.test_automation import pieces_arrive, refusals, refused_transfer

    lead, other = await two_reports_asked_for_a_photo_then_sent_on(db, then="instruction")
    assert (await assignment_of(db, other)).status == "transmise"
    await pieces_arrive(db, other)
    at = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    await refusals(db)(refused_transfer(lead, at))
    moved = await assignment_of(db, other)
    assert (moved.status, moved.auto_at) == ("instruction", None), "no timer to close it"
    back = await assignment_of(db, lead)
    assert (back.status, back.auto_at) == ("attente", at + timedelta(days=30)), "still awaited"


async def test_r30_r12_a_first_report_its_photo_closes_on_return_closes_its_incident_too(
    db: Database,
) -> None:
    # The first report's photo came while its transfer was pending, and the photo closes
    # it: once back, it closes as any first report does, with the incident and the others.
    from tests.routing.test_automation import pieces_arrive, refusals, refused_transfer

    lead, other = await two_reports_asked_for_a_photo_then_sent_on(db, then="classee")
    await pieces_arrive(db, lead)
    await refusals(db)(refused_transfer(lead, datetime(2026, 6, 2, 9, 0, tzinfo=UTC)))
    assert (await assignment_of(db, lead)).status == "classee"
    assert await open_incidents(db) == []
    assert (await assignment_of(db, other)).status == "classee"


@pytest.mark.parametrize("apart", ["in space", "in time"])
async def test_r30_r12_reopening_merges_only_incidents_within_reach_of_the_oldest(
    db: Database, apart: str
) -> None:
    # x, r, y: r within reach of x and of y, x and y not of each other (80 m apart, or
    # 40 days with a 30-day window). x's and r's transfers fail: r joins x, y stays apart.
    from tests.routing.test_automation import refusals, refused_transfer

    east_m, later = {"in space": (40, timedelta(hours=1)), "in time": (0, timedelta(days=20))}[
        apart
    ]
    await transferring(db)
    leads = []
    for i in range(3):
        event = report(0, east_m * i, at=MONDAY + later * i)
        await dispatch(db, event)
        leads.append(uuid.UUID(event.subject))
        if i < 2:
            await service.fire(db, leads[-1], SEND, VOIRIE)
    x, r, y = leads
    await refusals(db)(refused_transfer(x, MONDAY + timedelta(days=41)))
    await refusals(db)(refused_transfer(r, MONDAY + timedelta(days=42)))
    assert (await assignment_of(db, r)).duplicate
    assert not (await assignment_of(db, y)).duplicate
    assert {i.request_id for i in await open_incidents(db)} == {x, y}


async def test_r30_r12_a_report_closed_with_its_incident_on_return_is_not_moved_again(
    db: Database,
) -> None:
    # Both photos came during the transfer; the first report's closes it, its incident
    # and the other report: the other's own "photo received" does not fire from there.
    from tests.routing.test_automation import pieces_arrive, refusals, refused_transfer

    lead, other = await two_reports_asked_for_a_photo_then_sent_on(db, then="classee")
    for request_id in (lead, other):
        await pieces_arrive(db, request_id)
    await refusals(db)(refused_transfer(lead, datetime(2026, 6, 2, 9, 0, tzinfo=UTC)))
    closings = [
        e.data["transition"]
        for e in await staged(db)
        if e.type == "routing.request.status_changed.v1"
        and e.subject == str(other)
        and e.data["final"]
    ]
    assert closings == ["transmettre", "pieces_recues"], "closed once, with its incident"
    assert (await assignment_of(db, other)).status == "classee"
