"""Workflows configured without code (R29), versioned, with the GRC phases visible (R26)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from guichet_plumbing import tables
from guichet_plumbing.bus import InProcessBus
from guichet_plumbing.envelope import Envelope
from guichet_routing.app import create_app
from guichet_routing.settings import RoutingSettings
from guichet_routing.workflows import DEFAULT_WORKFLOW
from tests.identity import staff
from tests.support import received_event, serve

WORKFLOW: dict[str, Any] = {
    "initial": "a_qualifier",
    "statuses": [
        {"code": "a_qualifier", "label": "Reçue, en cours d'examen", "phase": "qualification"},
        {"code": "intervention", "label": "Intervention programmée", "phase": "processing"},
        {"code": "reparee", "label": "Réparée", "phase": "delivery", "final": True},
        {"code": "sans_suite", "label": "Classée sans suite", "phase": "delivery", "final": True},
    ],
    "transitions": [
        {
            "code": "programmer",
            "label": "Programmer l'intervention",
            "from": ["a_qualifier"],
            "to": "intervention",
            "actions": ["notify"],
        },
        {
            "code": "terminer",
            "label": "Marquer réparé",
            "from": ["intervention"],
            "to": "reparee",
            "actions": ["notify", "close_with_decision"],
        },
        {
            "code": "classer",
            "label": "Classer sans suite",
            "from": ["a_qualifier"],
            "to": "sans_suite",
            "actions": ["notify"],
        },
    ],
}


@pytest.fixture
async def routing(data_dir: Path) -> AsyncIterator[tuple[httpx.AsyncClient, InProcessBus, Any]]:
    bus = InProcessBus()
    app = create_app(RoutingSettings(data_dir=data_dir), bus=bus)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, headers=staff()) as client:
        yield client, bus, app.state.runtime.db


async def arrive(bus: InProcessBus, procedure: str = "signalement-voirie") -> str:
    event = received_event(procedure)
    await bus.publish(event)
    return event.subject


@pytest.mark.parametrize(
    ("change", "faulty"),
    [
        (lambda w: w["transitions"][0].update(to="nulle_part"), "transitions[0].to"),
        (lambda w: [s.update(final=False) for s in w["statuses"]], "statuses"),
        (
            lambda w: w["statuses"].append(
                {"code": "oubliee", "label": "Oubliée", "phase": "processing", "final": True}
            ),
            "statuses[4]",
        ),
        (lambda w: w["transitions"].pop(1), "statuses[1]"),  # intervention: a dead end
        (lambda w: w.update(initial="inconnu"), "initial"),
        # Checks across fields name the field to fix, not the object or the body.
        (
            lambda w: w["transitions"][0]["actions"].append({"type": "assign", "team": "b"}),
            "transitions[0].actions[1].assign.service",
        ),
        (
            lambda w: w["transitions"][0]["actions"].append(
                {"type": "transfer", "reason": "Compétence", "administration_name": "Préfecture"}
            ),
            "transitions[0].actions[1].transfer.administration_url",
        ),
        (
            lambda w: w["transitions"][0]["actions"].append(
                {
                    "type": "transfer",
                    "reason": "Compétence",
                    "tenant": "voisinville",
                    "administration_name": "Préfecture",
                }
            ),
            "transitions[0].actions[1].transfer.administration_name",
        ),
        (
            lambda w: w["transitions"][0].update(automatic={"after": {"days": 1, "hours": 2}}),
            "transitions[0].automatic.after.hours",
        ),
        (
            lambda w: w["transitions"][0].update(
                automatic={"after": {"days": 1}, "on": "pieces_received"}
            ),
            "transitions[0].automatic.on",
        ),
    ],
)
async def test_r29_invalid_workflow_is_refused_naming_the_faulty_element(
    routing: tuple[httpx.AsyncClient, InProcessBus, Any],
    change: Any,
    faulty: str,
) -> None:
    client, _, _ = routing
    broken = copy.deepcopy(WORKFLOW)
    change(broken)
    answer = await client.put(
        "/v1/workflows/signalement-voirie", params={"tenant": "admiville"}, json=broken
    )
    assert answer.status_code == 422, answer.text
    assert faulty in [p["name"] for p in answer.json()["invalid-params"]]


async def test_r29_new_version_routes_the_next_request_and_in_flight_keeps_its_own(
    routing: tuple[httpx.AsyncClient, InProcessBus, Any],
) -> None:
    client, bus, _ = routing
    before = await arrive(bus)
    assert (await client.get(f"/v1/requests/{before}")).json()["workflow_version"] == 0

    saved = await client.put(
        "/v1/workflows/signalement-voirie", params={"tenant": "admiville"}, json=WORKFLOW
    )
    assert saved.status_code == 201
    assert saved.json()["version"] == 1
    after = await arrive(bus)
    view = (await client.get(f"/v1/requests/{after}")).json()
    assert view["workflow_version"] == 1
    assert view["status"] == "a_qualifier"
    assert view["phase"] == "qualification"
    assert [t["code"] for t in view["available_transitions"]] == ["programmer", "classer"]

    # The request already in flight still follows the default circuit.
    old = await client.post(
        f"/v1/requests/{before}/transitions", json={"transition": "prendre_en_charge"}
    )
    assert old.status_code == 200
    assert old.json()["status"] == DEFAULT_WORKFLOW["statuses"][1]["code"]
    refused = await client.post(
        f"/v1/requests/{before}/transitions", json={"transition": "programmer"}
    )
    assert refused.status_code == 422


async def test_r26_transition_moves_phase_and_tells_the_citizen_in_their_words(
    routing: tuple[httpx.AsyncClient, InProcessBus, Any],
) -> None:
    client, bus, db = routing
    await client.put(
        "/v1/workflows/signalement-voirie", params={"tenant": "admiville"}, json=WORKFLOW
    )
    request_id = await arrive(bus)
    wrong = await client.post(
        f"/v1/requests/{request_id}/transitions", json={"transition": "terminer"}
    )
    assert wrong.status_code == 409
    moved = await client.post(
        f"/v1/requests/{request_id}/transitions",
        json={"transition": "programmer", "comment": "Équipe B, mardi"},
        headers=staff(subject="agent-17"),
    )
    assert moved.json()["phase"] == "processing"
    done = await client.post(
        f"/v1/requests/{request_id}/transitions", json={"transition": "terminer"}
    )
    assert done.json()["phase"] == "delivery"
    assert done.json()["available_transitions"] == []

    async with db.sessions() as session:
        payloads = await session.scalars(
            sa.select(tables.outbox.c.payload).order_by(tables.outbox.c.seq)
        )
        events = [Envelope.from_bytes(p) for p in payloads]
    changes = [e.data for e in events if e.type == "routing.request.status_changed.v1"]
    assert [(c["label"], c["final"]) for c in changes] == [
        ("Intervention programmée", False),
        ("Réparée", True),
    ]
    assert "Équipe B" not in str(changes), "internal comments stay internal"
    inbox = (
        await client.get("/v1/inbox", params={"tenant": "admiville", "status": "reparee"})
    ).json()
    assert [i["status_label"] for i in inbox["items"]] == ["Réparée"]


async def test_r28_inbox_filters_assignment_comments_and_commitments(
    routing: tuple[httpx.AsyncClient, InProcessBus, Any],
) -> None:
    client, bus, db = routing
    # The road service commits to answer within 8 days; nothing is late yet.
    put = await client.put(
        "/v1/services/voirie",
        params={"tenant": "admiville"},
        json={"commitment_days": 8, "email": "voirie@admiville.example"},
    )
    assert put.status_code == 204
    first = await arrive(bus)
    second = await arrive(bus, "reservation-salle")
    inbox = (
        await client.get(
            "/v1/inbox", params={"tenant": "admiville", "procedure": "signalement-voirie"}
        )
    ).json()
    [item] = inbox["items"]
    assert item["request_id"] == first
    assert item["due_at"] is not None
    assert item["overdue"] is False
    assert item["phase"] == "qualification"

    mine = await client.put(
        f"/v1/requests/{first}/agent",
        json={"agent": "agent-17"},
        headers=staff(subject="cheffe-voirie"),
    )
    assert mine.status_code == 200
    noted = await client.post(f"/v1/requests/{first}/comments", json={"text": "Appeler l'usager"})
    assert noted.status_code == 204
    assigned = (
        await client.get("/v1/inbox", params={"tenant": "admiville", "agent": "agent-17"})
    ).json()
    assert [i["request_id"] for i in assigned["items"]] == [first]
    found = (
        await client.get("/v1/inbox", params={"tenant": "admiville", "q": "reservation"})
    ).json()
    assert [i["request_id"] for i in found["items"]] == [second]

    # Its due date passed (moved back, as nine days would): the road report is late; the
    # room booking, whose service made no commitment, is not.
    async with db.transaction() as session:
        from guichet_routing.models import assignments

        await session.execute(
            assignments.update()
            .where(assignments.c.due_at.isnot(None))
            .values(due_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    late = (await client.get("/v1/inbox", params={"tenant": "admiville", "overdue": "true"})).json()
    assert [i["request_id"] for i in late["items"]] == [first]
    assert late["items"][0]["overdue"] is True
