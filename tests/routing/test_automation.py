"""Workflows as data, complete (R29): who may fire a transition, transitions that fire by
themselves (delay, event, form field), and the actions they carry — each request on the
version of its circuit it started with."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from guichet_intake.events import PiecesArrived, TransferNotMade
from guichet_plumbing import tables
from guichet_plumbing.auth import SYSTEM, Role
from guichet_plumbing.bus import InProcessBus
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.inbox import idempotent
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.problems import Problem
from guichet_routing import service, workflows
from guichet_routing.app import create_app
from guichet_routing.models import assignments
from guichet_routing.repository import InboxFilter
from guichet_routing.schemas import TransitionCreate, WorkflowWrite
from guichet_routing.settings import RoutingSettings
from guichet_routing.workflows import Actor
from tests.identity import admin, agent
from tests.support import received_event, serve

PROCEDURE = "acte-etat-civil"
HEAD = Actor("cheffe-etat-civil", frozenset({"service_head"}), frozenset({"etat-civil"}))
# The same head as a caller: `service.fire` takes her roles and services from the token.
HEAD_AGENT = agent(Role.service_head, services=("etat-civil",), subject="cheffe-etat-civil")

CIRCUIT: dict[str, Any] = {
    "initial": "recue",
    "statuses": [
        {"code": "recue", "label": "Reçue", "phase": "qualification"},
        {"code": "attente_pieces", "label": "En attente de vos pièces", "phase": "processing"},
        {"code": "instruction", "label": "En cours d'instruction", "phase": "processing"},
        {"code": "delivree", "label": "Acte délivré", "phase": "delivery", "final": True},
        {"code": "classee", "label": "Classée sans suite", "phase": "delivery", "final": True},
        {"code": "transmise", "label": "Transmise", "phase": "delivery", "final": True},
    ],
    "transitions": [
        {
            "code": "demander_pieces",
            "label": "Demander des pièces",
            "from": ["recue"],
            "to": "attente_pieces",
            "actions": [
                "notify",
                {
                    "type": "request_pieces",
                    "pieces": ["Copie de la pièce d'identité"],
                    "due_in_days": 15,
                },
            ],
        },
        {
            "code": "pieces_recues",
            "label": "Pièces reçues",
            "from": ["attente_pieces"],
            "to": "instruction",
            "actions": ["notify"],
            "automatic": {"on": "pieces_received"},
        },
        {
            "code": "classer_faute_de_pieces",
            "label": "Classer faute de pièces",
            "from": ["attente_pieces"],
            "to": "classee",
            "actions": ["notify", "close_with_decision"],
            "automatic": {"after": {"days": 30}},
        },
        {
            "code": "urgence",
            "label": "Instruire en urgence",
            "from": ["recue"],
            "to": "instruction",
            "actions": [{"type": "assign", "service": "etat-civil", "agent": "agent-urgences"}],
            "automatic": {"when": {"field": "urgent", "equals": True}},
        },
        {
            "code": "delivrer",
            "label": "Délivrer l'acte",
            "from": ["instruction"],
            "to": "delivree",
            "actions": ["notify", "close_with_decision"],
            "roles": ["service_head"],
            "services": ["etat-civil"],
        },
        {
            "code": "transmettre",
            "label": "Transmettre à la métropole",
            "from": ["recue"],
            "to": "transmise",
            "actions": [{"type": "transfer", "tenant": "metropole", "reason": "Compétence"}],
        },
    ],
}


async def publish(db: Database, circuit: dict[str, Any] = CIRCUIT) -> int:
    saved = await service.put_workflow(
        db, "admiville", PROCEDURE, WorkflowWrite.model_validate(circuit)
    )
    return saved.version


async def arrive(db: Database, payload: dict[str, Any] | None = None) -> uuid.UUID:
    handle = idempotent(db, "routing.dispatch", service.on_request_received, ServiceMetrics("t"))
    event = received_event(PROCEDURE, payload=payload)
    await handle(event)
    return uuid.UUID(event.subject)


async def events(db: Database, event_type: str) -> list[dict[str, Any]]:
    async with db.sessions() as session:
        payloads = await session.scalars(
            sa.select(tables.outbox.c.payload).order_by(tables.outbox.c.seq)
        )
        found = [Envelope.from_bytes(p) for p in payloads]
    return [e.data for e in found if e.type == event_type]


async def row(db: Database, request_id: uuid.UUID) -> Any:
    async with db.sessions() as session:
        return (
            await session.execute(
                sa.select(assignments).where(assignments.c.request_id == request_id)
            )
        ).one()


def test_r29_roles_and_services_decide_who_may_fire() -> None:
    deliver = next(t for t in CIRCUIT["transitions"] if t["code"] == "delivrer")
    assert workflows.refusal(deliver, HEAD) is None
    handler = Actor("agent-3", frozenset({"case_handler"}), frozenset({"etat-civil"}))
    assert "service_head" in (workflows.refusal(deliver, handler) or "")
    elsewhere = Actor("chef-voirie", frozenset({"service_head"}), frozenset({"voirie"}))
    assert "etat-civil" in (workflows.refusal(deliver, elsewhere) or "")
    assert workflows.refusal(deliver, Actor(None)) is not None
    anyone = next(t for t in CIRCUIT["transitions"] if t["code"] == "demander_pieces")
    assert workflows.refusal(anyone, Actor(None)) is None
    timed = next(t for t in CIRCUIT["transitions"] if t["code"] == "classer_faute_de_pieces")
    assert workflows.refusal(timed, HEAD) is not None, "automatic transitions are not buttons"


async def test_r29_transition_reserved_to_a_role_is_refused_to_others(
    routing_db: Database,
) -> None:
    await publish(routing_db)
    request_id = await arrive(routing_db, {"urgent": True})
    deliver = TransitionCreate(transition="delivrer")
    # A case handler of the service holds the file but not the head's role.
    clerk = agent(Role.counter_agent, Role.case_handler, services=("etat-civil",))
    with pytest.raises(Problem) as refused:
        await service.fire(routing_db, request_id, deliver, clerk)
    assert refused.value.status == 403
    assert "service_head" in refused.value.detail
    # Another service's head does not even see the file (R21).
    elsewhere = agent(Role.service_head, services=("voirie",))
    with pytest.raises(Problem) as hidden:
        await service.fire(routing_db, request_id, deliver, elsewhere)
    assert hidden.value.status == 404
    done = await service.fire(routing_db, request_id, deliver, HEAD_AGENT)
    assert done.status == "delivree"
    assert done.available_transitions == []


async def test_r29_timed_transition_fires_after_its_delay_on_the_version_it_started_with(
    routing_db: Database,
) -> None:
    await publish(routing_db)
    request_id = await arrive(routing_db)
    asked_at = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    waiting = await service.fire(
        routing_db,
        request_id,
        TransitionCreate(transition="demander_pieces"),
        HEAD_AGENT,
        now=asked_at,
    )
    assert waiting.status == "attente_pieces"
    # Not a button: the agent sees only what they may fire by hand.
    assert waiting.available_transitions == []
    # 2 March + 30 days = 1 April, same hour.
    assert (await row(routing_db, request_id)).auto_at == datetime(2026, 4, 1, 8, 0, tzinfo=UTC)

    # The circuit now says 10 days; this request keeps its version's 30.
    shorter = copy.deepcopy(CIRCUIT)
    shorter["transitions"][2]["automatic"] = {"after": {"days": 10}}
    assert await publish(routing_db, shorter) == 2
    assert await service.fire_due(routing_db, now=datetime(2026, 3, 12, 8, 0, tzinfo=UTC)) == 0
    assert await service.fire_due(routing_db, now=datetime(2026, 4, 1, 7, 59, tzinfo=UTC)) == 0
    assert await service.fire_due(routing_db, now=datetime(2026, 4, 1, 8, 0, tzinfo=UTC)) == 1
    closed = await row(routing_db, request_id)
    assert (closed.status, closed.closed, closed.auto_at) == ("classee", True, None)
    assert closed.workflow_version == 1
    assert await service.fire_due(routing_db, now=datetime(2026, 5, 1, tzinfo=UTC)) == 0
    [*_, last] = await events(routing_db, "routing.request.status_changed.v1")
    assert last["transition"] == "classer_faute_de_pieces"
    assert last["final"] is True
    assert last["actions"] == ["notify", "close_with_decision"]


async def test_r29_pieces_arriving_fire_the_transition_waiting_for_them(
    routing_db: Database,
) -> None:
    await publish(routing_db)
    request_id = await arrive(routing_db)
    await service.fire(
        routing_db, request_id, TransitionCreate(transition="demander_pieces"), HEAD_AGENT
    )
    await pieces_arrive(routing_db, request_id)
    moved = await row(routing_db, request_id)
    assert (moved.status, moved.auto_at) == ("instruction", None), "the timer is dropped"
    changes = await events(routing_db, "routing.request.status_changed.v1")
    assert [c["transition"] for c in changes] == ["demander_pieces", "pieces_recues"]


async def test_r29_form_field_condition_moves_the_request_on_arrival_and_assigns_it(
    routing_db: Database,
) -> None:
    await publish(routing_db)
    ordinary = await arrive(routing_db, {"urgent": False})
    urgent = await arrive(routing_db, {"urgent": True})
    assert (await row(routing_db, ordinary)).status == "recue"
    fast = await row(routing_db, urgent)
    assert (fast.status, fast.agent, fast.service_code) == (
        "instruction",
        "agent-urgences",
        "etat-civil",
    )
    [change] = await events(routing_db, "routing.request.status_changed.v1")
    assert change["transition"] == "urgence"


async def test_r29_request_pieces_and_transfer_are_asked_of_intake_by_events(
    routing_db: Database,
) -> None:
    await publish(routing_db)
    first = await arrive(routing_db)
    await service.fire(
        routing_db,
        first,
        TransitionCreate(transition="demander_pieces", pieces=["Livret de famille"]),
        agent(Role.case_handler, services=("etat-civil",), subject="agent-3"),
    )
    [asked] = await events(routing_db, "routing.request.pieces_requested.v1")
    assert asked["pieces"] == ["Livret de famille"], "the agent's list replaces the circuit's"
    assert asked["due_in_days"] == 15
    assert asked["requested_by"] == "agent-3"

    second = await arrive(routing_db)
    sent = await service.fire(
        routing_db, second, TransitionCreate(transition="transmettre"), SYSTEM
    )
    assert sent.status == "transmise"
    [transfer] = await events(routing_db, "routing.request.transfer_requested.v1")
    assert (transfer["tenant"], transfer["reason"]) == ("metropole", "Compétence")


def refused_transfer(request_id: uuid.UUID, at: datetime) -> Envelope:
    """Intake's word that it could not make a transfer (its own event class)."""
    return TransferNotMade(
        request_id=request_id,
        tracking_code="ABCD-TEST-TEST-TEST",
        destination="Métropole",
        detail="La collectivité « metropole » n'est pas servie par ce guichet.",
        refused_at=at,
    ).envelope(tenant="admiville", subject=str(request_id))


async def test_r12_a_transfer_intake_could_not_make_gives_the_request_back_to_its_service(
    routing_db: Database,
) -> None:
    # The circuit may transfer from two statuses; this request left "instruction" (it was
    # urgent), so it goes back there, not to the first status that could transfer.
    circuit = copy.deepcopy(CIRCUIT)
    transmettre = circuit["transitions"][-1]
    transmettre["from"] = ["recue", "instruction"]
    transmettre["actions"] = ["notify", *transmettre["actions"]]
    await publish(routing_db, circuit)
    request_id = await arrive(routing_db, {"urgent": True})
    await service.fire(routing_db, request_id, TransitionCreate(transition="transmettre"), SYSTEM)
    assert (await row(routing_db, request_id)).closed

    at = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    handle = idempotent(
        routing_db, "routing.transfers", service.on_transfer_refused, ServiceMetrics("t")
    )
    refused = refused_transfer(request_id, at)
    await handle(refused)
    await handle(refused)
    back = await row(routing_db, request_id)
    assert (back.status, back.closed, back.status_since) == ("instruction", False, at)
    inbox = await service.inbox(routing_db, InboxFilter("admiville"), cursor=None, limit=50)
    assert request_id in [i.request_id for i in inbox.items]
    assert inbox.counts.get("instruction") == 1, "counted among the open requests again"

    changes = await events(routing_db, "routing.request.status_changed.v1")
    assert [c["transition"] for c in changes][-2:] == ["transmettre", "transmission_non_aboutie"]
    reopened = changes[-1]
    assert (reopened["status"], reopened["final"]) == ("instruction", False)
    assert reopened["actions"] == ["notify"], "told of the transfer, told it did not happen"

    view = await service.assignment(routing_db, request_id)
    assert {t["code"] for t in view.available_transitions} >= {"transmettre", "delivrer"}
    [note] = [h for h in view.history if h.comment and "metropole" in h.comment]
    assert note.status == "instruction"
    assert note.comment.startswith("Transmission à Métropole non aboutie : ")


async def test_r12_a_refused_transfer_does_not_reopen_a_request_decided_since(
    routing_db: Database,
) -> None:
    # An agent's own transfer (made in intake, not by the circuit) that fails later, on a
    # request the service has answered meanwhile: the answer stands, the failure is noted.
    await publish(routing_db)
    request_id = await arrive(routing_db, {"urgent": True})
    await service.fire(routing_db, request_id, TransitionCreate(transition="delivrer"), HEAD_AGENT)
    handle = idempotent(
        routing_db, "routing.transfers", service.on_transfer_refused, ServiceMetrics("t")
    )
    await handle(refused_transfer(request_id, datetime(2026, 6, 2, 9, 0, tzinfo=UTC)))
    kept = await row(routing_db, request_id)
    assert (kept.status, kept.closed) == ("delivree", True)
    changes = await events(routing_db, "routing.request.status_changed.v1")
    assert changes[-1]["transition"] == "delivrer", "no status change announced"
    view = await service.assignment(routing_db, request_id)
    assert view.history[-1].label == "Transmission non aboutie"
    assert "metropole" in (view.history[-1].comment or "")


async def pieces_arrive(db: Database, request_id: uuid.UUID) -> None:
    """Intake's word that the pieces arrived (its own event class), handled twice."""
    arrived = PiecesArrived(
        request_id=request_id, tracking_code="ABCD-TEST-TEST-TEST", received_on=date(2026, 6, 1)
    ).envelope(tenant="admiville", subject=str(request_id))
    handle = idempotent(db, "routing.pieces", service.on_pieces_received, ServiceMetrics("t"))
    await handle(arrived)
    await handle(arrived)


async def transferred_waiting_for_pieces(db: Database) -> uuid.UUID:
    """A request the circuit transferred while it waited for pieces."""
    circuit = copy.deepcopy(CIRCUIT)
    circuit["transitions"][-1]["from"] = ["recue", "attente_pieces"]
    await publish(db, circuit)
    request_id = await arrive(db)
    await service.fire(db, request_id, TransitionCreate(transition="demander_pieces"), SYSTEM)
    await service.fire(db, request_id, TransitionCreate(transition="transmettre"), SYSTEM)
    return request_id


def handing_to_voirie_from(status: str) -> dict[str, Any]:
    """The circuit, with a transition handing the request to the road service."""
    circuit = copy.deepcopy(CIRCUIT)
    circuit["transitions"].append(
        {
            "code": "confier_voirie",
            "label": "Confier à la voirie",
            "from": [status],
            "to": "instruction",
            "actions": [{"type": "assign", "service": "voirie"}],
        }
    )
    return circuit


def refusals(db: Database) -> Any:
    return idempotent(db, "routing.transfers", service.on_transfer_refused, ServiceMetrics("t"))


async def test_r12_a_request_answered_in_a_status_a_transfer_also_enters_stays_answered(
    routing_db: Database,
) -> None:
    # One final status entered by a decision and by a transfer: what closed the request
    # decides, not the status it is in. Here an answer; the refusal (of an agent's own
    # transfer, sent from intake) is only noted.
    circuit = copy.deepcopy(CIRCUIT)
    for t in circuit["transitions"]:
        if t["code"] in ("delivrer", "transmettre"):
            t["to"] = "transmise"
    circuit["statuses"] = [s for s in circuit["statuses"] if s["code"] != "delivree"]
    await publish(routing_db, circuit)
    request_id = await arrive(routing_db, {"urgent": True})
    await service.fire(routing_db, request_id, TransitionCreate(transition="delivrer"), HEAD_AGENT)
    await refusals(routing_db)(refused_transfer(request_id, datetime(2026, 6, 2, tzinfo=UTC)))
    kept = await row(routing_db, request_id)
    assert (kept.status, kept.closed) == ("transmise", True)


@pytest.mark.parametrize("fired", ["transmettre", "transmettre_et_dire"])
async def test_r12_the_citizen_hears_of_a_failed_transfer_only_if_told_of_the_transfer(
    routing_db: Database, fired: str
) -> None:
    # Two transfers from "recue" into "transmise", one telling the citizen, one not: the
    # one that fired decides whether its failure is told.
    circuit = copy.deepcopy(CIRCUIT)
    loud = copy.deepcopy(circuit["transitions"][-1])
    loud.update(code="transmettre_et_dire", actions=["notify", *loud["actions"]])
    circuit["transitions"].append(loud)
    await publish(routing_db, circuit)
    request_id = await arrive(routing_db)
    await service.fire(routing_db, request_id, TransitionCreate(transition=fired), SYSTEM)
    await refusals(routing_db)(refused_transfer(request_id, datetime(2026, 6, 2, tzinfo=UTC)))
    changes = await events(routing_db, "routing.request.status_changed.v1")
    assert changes[-1]["actions"] == (["notify"] if fired == "transmettre_et_dire" else [])
    assert changes[-1]["label"] == "Reçue (transmission à Métropole non aboutie)"


async def test_r12_pieces_that_arrived_while_the_transfer_was_pending_move_the_request_on(
    routing_db: Database,
) -> None:
    # Transferred while waiting for pieces; the pieces reach intake while the transfer is
    # tried (routing is in "transmise": nothing fires then). When it fails, the request
    # comes back and what waited for the pieces fires: it is not closed for want of them.
    request_id = await transferred_waiting_for_pieces(routing_db)
    await pieces_arrive(routing_db, request_id)
    at = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    await refusals(routing_db)(refused_transfer(request_id, at))
    assert (await row(routing_db, request_id)).status == "instruction"
    await service.fire_due(routing_db, at + timedelta(days=31))
    assert (await row(routing_db, request_id)).status == "instruction"


async def test_r12_a_failed_transfer_the_pieces_fired_does_not_close_for_want_of_them(
    routing_db: Database,
) -> None:
    # The circuit forwards the file once complete: the pieces fire the transfer, which
    # fails. Back waiting for pieces that came, its timers no longer run: an agent decides.
    circuit = copy.deepcopy(CIRCUIT)
    forward = next(t for t in circuit["transitions"] if t["code"] == "pieces_recues")
    forward.update(
        to="transmise",
        actions=[{"type": "transfer", "tenant": "metropole", "reason": "Compétence"}],
    )
    await publish(routing_db, circuit)
    request_id = await arrive(routing_db)
    await service.fire(
        routing_db, request_id, TransitionCreate(transition="demander_pieces"), SYSTEM
    )
    await pieces_arrive(routing_db, request_id)
    assert (await row(routing_db, request_id)).status == "transmise"
    at = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    await refusals(routing_db)(refused_transfer(request_id, at))
    back = await row(routing_db, request_id)
    assert (back.status, back.closed, back.auto_at) == ("attente_pieces", False, None)
    await service.fire_due(routing_db, at + timedelta(days=31))
    assert (await row(routing_db, request_id)).status == "attente_pieces"


async def test_r12_still_awaited_pieces_keep_the_request_waiting_for_them(
    routing_db: Database,
) -> None:
    request_id = await transferred_waiting_for_pieces(routing_db)
    at = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    await refusals(routing_db)(refused_transfer(request_id, at))
    back = await row(routing_db, request_id)
    assert (back.status, back.auto_at) == ("attente_pieces", at + timedelta(days=30))


async def test_r12_a_timed_transfer_that_failed_is_not_fired_again_by_itself(
    routing_db: Database,
) -> None:
    # A transfer the circuit fires after two days in "recue": once refused, it would be
    # refused again and again (the citizen told each time); an agent decides instead.
    circuit = copy.deepcopy(CIRCUIT)
    transmettre = circuit["transitions"][-1]
    transmettre.update(
        actions=["notify", *transmettre["actions"]], automatic={"after": {"days": 2}}
    )
    await publish(routing_db, circuit)
    request_id = await arrive(routing_db)
    now = (await row(routing_db, request_id)).status_since + timedelta(days=3)
    assert await service.fire_due(routing_db, now) == 1
    await refusals(routing_db)(refused_transfer(request_id, now))
    back = await row(routing_db, request_id)
    assert (back.status, back.auto_at) == ("recue", None)
    assert await service.fire_due(routing_db, now + timedelta(days=30)) == 0
    # Once an agent moves it on, the circuit's automation applies again.
    await service.fire(
        routing_db, request_id, TransitionCreate(transition="demander_pieces"), SYSTEM
    )
    assert not (await row(routing_db, request_id)).transfer_refused


async def test_r12_an_agent_who_sent_the_file_to_another_service_no_longer_reads_its_history(
    routing_db: Database,
) -> None:
    await publish(routing_db, handing_to_voirie_from("recue"))
    request_id = await arrive(routing_db)
    await service.comment(routing_db, request_id, "Usager joint par téléphone", HEAD_AGENT)
    mine = await service.assignment(routing_db, request_id, HEAD_AGENT)
    assert mine.history[-1].comment == "Usager joint par téléphone"
    moved = await service.fire(
        routing_db, request_id, TransitionCreate(transition="confier_voirie"), HEAD_AGENT
    )
    assert moved.history == []
    voirie = agent(Role.case_handler, services=("voirie",), subject="agent.voirie")
    theirs = await service.assignment(routing_db, request_id, voirie)
    assert "Usager joint par téléphone" in [h.comment for h in theirs.history]


async def test_r29_assign_action_moves_the_request_to_another_service(
    routing_db: Database,
) -> None:
    await publish(routing_db, handing_to_voirie_from("instruction"))
    request_id = await arrive(routing_db, {"urgent": True})
    moved = await service.fire(
        routing_db, request_id, TransitionCreate(transition="confier_voirie"), SYSTEM
    )
    assert moved.service == "Centre technique municipal, service de la voirie"
    assignments_sent = await events(routing_db, "routing.request.assigned.v1")
    assert [a["service_code"] for a in assignments_sent] == ["etat-civil", "voirie"]


@pytest.mark.parametrize(
    ("change", "faulty"),
    [
        (lambda c: c["transitions"][0].update(roles=["maire"]), "transitions[0].roles[0]"),
        (
            lambda c: c["transitions"][0]["actions"].append("teleporter"),
            "transitions[0].actions[2]",
        ),
        (
            lambda c: c["transitions"][2].update(automatic={"after": {"days": 0}}),
            "transitions[2].automatic.after.days",
        ),
        (
            lambda c: c["transitions"][2].update(automatic={"after": {"weeks": 2}}),
            "transitions[2].automatic.after.weeks",
        ),
        (
            lambda c: c["transitions"][2].update(
                automatic={"after": {"days": 3}, "on": "pieces_received"}
            ),
            "transitions[2].automatic.on",
        ),
        (
            lambda c: c["transitions"][1].update(to="instruction", actions=["close_with_decision"]),
            "transitions[1].actions[0]",
        ),
        (lambda c: c["transitions"][2].update(roles=["case_handler"]), "transitions[2].roles"),
        (
            lambda c: c["transitions"][3]["actions"][0].update(service="piscine"),
            "transitions[3].actions[0].service",
        ),
        (
            lambda c: c["transitions"][3]["actions"][0].update(team="fantome"),
            "transitions[3].actions[0].team",
        ),
        (lambda c: c["transitions"][4].update(services=["piscine"]), "transitions[4].services[0]"),
    ],
)
async def test_r29_invalid_automation_is_refused_naming_the_element(
    data_dir: Path, change: Any, faulty: str
) -> None:
    broken = copy.deepcopy(CIRCUIT)
    change(broken)
    app = create_app(RoutingSettings(data_dir=data_dir), bus=InProcessBus())
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        answer = await client.put(
            f"/v1/workflows/{PROCEDURE}",
            params={"tenant": "admiville"},
            json=broken,
            headers=admin(),
        )
    assert answer.status_code == 422, answer.text
    assert faulty in [p["name"] for p in answer.json()["invalid-params"]]
