"""Legal acts a service's workflow asks for (R11, R12, R29): routing emits an event, intake
issues the act as if an agent had asked it here, once however often the event arrives."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from guichet_intake.schemas import MissingPiecesCreate, PiecesReceived
from guichet_intake.service import IntakeService
from guichet_plumbing.inbox import idempotent
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.problems import Problem
from guichet_routing.events import (
    PiecesRequested,
    RequestAssigned,
    TransferRequested,
)
from tests.intake.helpers import (
    add_neighbour,
    add_tenant,
    answered_by_workflow,
    as_left_by_a_signing_failure,
    close_by_workflow,
    outbox_events,
    pieces_asked_by_workflow,
    standing_decisions,
    submit,
    transfer_by_workflow,
)


async def test_r11_pieces_asked_by_the_workflow_are_requested_once(
    intake: IntakeService,
) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    request_id = uuid.UUID(created["id"])
    asked = PiecesRequested(
        request_id=request_id,
        tracking_code=created["tracking_code"],
        pieces=["Attestation d'assurance"],
        due_in_days=15,
        requested_by="agent-3",
        # 20 May, 23:30 in Paris (UTC+2): the 15 days run from the 20th.
        requested_at=datetime(2026, 5, 20, 21, 30, tzinfo=UTC),
    ).envelope(tenant="admiville", subject=str(request_id))
    handle = idempotent(intake.db, "intake.pieces", intake.on_pieces_requested, ServiceMetrics("t"))
    await handle(asked)
    await handle(asked)
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "incomplete"
    notices = [r for r in followed.receipts if r.kind.value == "demande_pieces"]
    assert len(notices) == 1
    assert "au plus tard le 4 juin 2026" in " ".join(notices[0].mentions)

    await intake.pieces_received(
        created["tracking_code"], PiecesReceived(), now=datetime(2026, 5, 28, 9, 0, tzinfo=UTC)
    )
    [arrived] = await outbox_events(intake.db, "intake.request.pieces_received.v1")
    assert arrived.data == {
        "request_id": str(request_id),
        "tracking_code": created["tracking_code"],
        "received_on": "2026-05-28",
    }


async def test_r12_transfer_asked_by_the_workflow_is_made_and_a_refusal_does_not_block(
    intake: IntakeService,
) -> None:
    await add_neighbour(intake.db)
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    asked = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)

    # Its own tenant: intake refuses; the event is consumed, and the request stays here,
    # its service told that it has it back.
    await transfer_by_workflow(intake, created, asked, tenant="admiville")
    kept = await intake.get_request(created["tracking_code"])
    assert kept.status.value == "received"
    assert "n'a pas abouti" in kept.history[-1].label
    [told] = await outbox_events(intake.db, "intake.request.transfer_refused.v1")
    assert told.data["destination"] == "Commune d'Admiville", "its name, not its code"
    assert "propre collectivité" in told.data["detail"]

    # The workflow's final status may overtake the transfer (another topic): it must not
    # close the request before intake could transfer it.
    await close_by_workflow(
        intake,
        created,
        datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
        status="transmise",
        label="Transmise à la commune compétente",
        transition="transmettre",
        actions=["notify", "transfer"],
    )
    await transfer_by_workflow(intake, created, asked)
    moved = await intake.get_request(created["tracking_code"])
    assert moved.status.value == "transferred"
    assert moved.receipts[-1].kind.value == "avis_transmission"
    [event] = await outbox_events(intake.db, "intake.request.transferred.v1")
    assert event.data["destination_tenant"] == "voisinville"


@pytest.mark.parametrize("later", [timedelta(days=1), timedelta(0)])
async def test_r12_r30_a_request_its_service_takes_back_is_open_here_again(
    intake: IntakeService, later: timedelta
) -> None:
    # A report closed with its incident, brought back when the first report's transfer
    # failed: open here again (pieces can be received...), with no clock restarted. An
    # immediate refusal is dated when the transfer was asked: the closing's own time.
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    await close_by_workflow(
        intake,
        created,
        datetime(2026, 5, 21, 9, 0, tzinfo=UTC) - later,
        status="transmise",
        label="Transmise",
        transition="transmettre",
        actions=[],
    )
    assert (await intake.get_request(created["tracking_code"])).status.value == "closed"
    await close_by_workflow(
        intake,
        created,
        datetime(2026, 5, 21, 9, 0, tzinfo=UTC),
        status="recue",
        label="Reçue (transmission à Métropole non aboutie)",
        final=False,
        transition="transmission_non_aboutie",
        actions=[],
    )
    back = await intake.get_request(created["tracking_code"])
    assert back.status.value == "processing"
    assert back.implicit_decision is None or back.implicit_decision.decision_date is None
    asked = await intake.request_pieces(
        created["tracking_code"],
        MissingPiecesCreate(pieces=["Photo du lieu"], due_on=date(2026, 6, 15)),
        now=datetime(2026, 5, 22, 9, 0, tzinfo=UTC),
    )
    assert asked.status.value == "incomplete", "a closed request would refuse it (409)"


REOPENED: dict[str, Any] = {
    "from_status": "repondue",
    "status": "instruction",
    "label": "Réouverte",
    "final": False,
    "transition": "rouvrir",
    "actions": [],
}


async def test_r10_an_answered_request_taken_back_is_never_decided_by_silence(
    intake: IntakeService,
) -> None:
    # Answered (SVA procedure), then reopened by the service: asking for pieces, receiving
    # them, restarts no clock; the notice states none; silence never decides it.
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    code = created["tracking_code"]
    await close_by_workflow(intake, created, datetime(2026, 5, 20, 9, 0, tzinfo=UTC))
    await close_by_workflow(intake, created, datetime(2026, 5, 21, 9, 0, tzinfo=UTC), **REOPENED)
    asked = await intake.request_pieces(
        code,
        MissingPiecesCreate(pieces=["Attestation"], due_on=date(2026, 6, 15)),
        now=datetime(2026, 5, 22, 9, 0, tzinfo=UTC),
    )
    assert asked.implicit_decision is None or asked.implicit_decision.state == "none"
    notice = " ".join(asked.receipts[-1].mentions)
    assert "réputée" not in notice and "suspendu" not in notice, notice
    got = await intake.pieces_received(
        code, PiecesReceived(), now=datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    )
    assert got.implicit_decision is None or got.implicit_decision.decision_date is None
    assert await intake.decide_due(now=datetime(2026, 9, 1, 9, 0, tzinfo=UTC)) == 0


async def test_r10_a_late_answer_voiding_the_decision_keeps_a_later_reopening_in_force(
    intake: IntakeService,
) -> None:
    # Answered on 15 July at 21:00 UTC (rank 1), reopened at 21:30 (rank 2); the reopening
    # arrives first, the scheduler decides at the deadline (22:00 UTC), then the answer
    # arrives: given in time, it voids the decision, and the file stays reopened.
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    await close_by_workflow(
        intake, created, datetime(2026, 7, 15, 21, 30, tzinfo=UTC), sequence=2, **REOPENED
    )
    assert await intake.decide_due(now=datetime(2026, 7, 15, 22, 0, 5, tzinfo=UTC)) == 1
    await close_by_workflow(intake, created, datetime(2026, 7, 15, 21, 0, tzinfo=UTC), sequence=1)
    kept = await intake.get_request(created["tracking_code"])
    assert kept.implicit_decision is not None and kept.implicit_decision.decided is None
    assert (kept.status.value, kept.status_label) == ("processing", "Réouverte")


@pytest.mark.parametrize(
    "delivered",
    [
        # (ranks in the order delivered), what the request ends as
        ((2, 1), ("processing", "Réouverte")),  # reopened, then the answer before it
        ((1, 3, 2), ("closed", "Réponse définitive")),  # answered twice, the reopening late
        ((3, 1), ("closed", "Réponse définitive")),  # two answers, the first one late
    ],
)
@pytest.mark.parametrize("clocks", ["in step", "the later replica 5 s behind"])
async def test_r10_statuses_delivered_out_of_order_leave_the_latest_in_force(
    intake: IntakeService, delivered: tuple[tuple[int, ...], tuple[str, str]], clocks: str
) -> None:
    # Each routing replica relays its own outbox, and keeps its own clock: a status may
    # arrive after a later one, and bear an earlier time. Routing's rank decides.
    order, expected = delivered
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    statuses = {
        1: {"label": "Réponse envoyée"},
        2: REOPENED,
        3: {"from_status": "instruction", "label": "Réponse définitive"},
    }
    skew = timedelta(seconds=5) if clocks != "in step" else timedelta(seconds=-5)
    for rank in order:
        at = datetime(2026, 5, 20, 9, 0, tzinfo=UTC) - skew * rank
        await close_by_workflow(intake, created, at, sequence=rank, **statuses[rank])
    kept = await intake.get_request(created["tracking_code"])
    assert (kept.status.value, kept.status_label) == expected
    assert len([h for h in kept.history if h.at.day == 20]) == len(order)


async def test_r10_an_answer_overtaken_by_its_reopening_still_stops_the_clock(
    intake: IntakeService,
) -> None:
    # Answered on 20 May, reopened on the 21st; the reopening arrives first. The answer,
    # given long before the deadline (SVA, 15 July), still means silence never decides.
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    await close_by_workflow(
        intake, created, datetime(2026, 5, 21, 9, 0, tzinfo=UTC), sequence=2, **REOPENED
    )
    await close_by_workflow(intake, created, datetime(2026, 5, 20, 9, 0, tzinfo=UTC), sequence=1)
    kept = await intake.get_request(created["tracking_code"])
    assert (kept.status.value, kept.status_label) == ("processing", "Réouverte")
    assert await intake.decide_due(now=datetime(2026, 7, 16, 12, 0, tzinfo=UTC)) == 0


@pytest.mark.parametrize("transferred", [False, True])
async def test_r12_a_take_back_delivered_before_the_closing_it_undoes_wins(
    intake: IntakeService, transferred: bool
) -> None:
    # An immediate refusal bears the transfer's own time: the take-back and the closing
    # it undoes are dated alike; arriving first, the take-back still wins by its rank.
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    at = datetime(2026, 5, 20, 9, 0, tzinfo=UTC)
    back = {**REOPENED, "status": "recue", "label": "Reçue (transmission non aboutie)"}
    await close_by_workflow(intake, created, at, sequence=2, **back)
    await close_by_workflow(
        intake,
        created,
        at,
        sequence=1,
        status="transmise",
        label="Transmise",
        transition="transmettre",
        actions=["transfer"] if transferred else [],
    )
    kept = await intake.get_request(created["tracking_code"])
    assert (kept.status.value, kept.status_label) == (
        "processing",
        "Reçue (transmission non aboutie)",
    )


async def test_r5_r10_an_answered_request_gets_no_ar_announcing_a_silence(
    intake: IntakeService,
) -> None:
    # Answered, reopened, then qualified or completed: no AR promising an implicit
    # decision that can no longer be born.
    unqualified = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC), procedure=None)
    complete = await submit(intake, datetime(2026, 5, 15, 9, 1, tzinfo=UTC))
    for created in (unqualified, complete):
        await close_by_workflow(intake, created, datetime(2026, 5, 20, 9, 0, tzinfo=UTC))
        await close_by_workflow(
            intake, created, datetime(2026, 5, 21, 9, 0, tzinfo=UTC), **REOPENED
        )
    qualified = await intake.qualify(
        unqualified["tracking_code"],
        "reservation-salle",
        now=datetime(2026, 5, 22, 9, 0, tzinfo=UTC),
    )
    await intake.request_pieces(
        complete["tracking_code"],
        MissingPiecesCreate(pieces=["Attestation"], due_on=date(2026, 6, 15)),
        now=datetime(2026, 5, 22, 9, 0, tzinfo=UTC),
    )
    completed = await intake.pieces_received(
        complete["tracking_code"], PiecesReceived(), now=datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    )
    for followed in (qualified, completed):
        ars = [r for r in followed.receipts if r.issued_at.month == 5 and r.issued_at.day >= 22]
        ars += [r for r in followed.receipts if r.issued_at.month == 6]
        assert not [r for r in ars if r.kind.value == "accuse_reception"], followed.receipts


async def test_r10_a_status_without_rank_from_an_older_routing_is_applied_as_it_comes(
    intake: IntakeService,
) -> None:
    # During a rolling upgrade an older routing replica sends no rank: its status is
    # applied, not taken for a late one.
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    await close_by_workflow(
        intake, created, datetime(2026, 5, 20, 9, 0, tzinfo=UTC), sequence=4, **REOPENED
    )
    await close_by_workflow(intake, created, datetime(2026, 5, 21, 9, 0, tzinfo=UTC), sequence=0)
    kept = await intake.get_request(created["tracking_code"])
    assert (kept.status.value, kept.status_label) == ("closed", "Réponse envoyée")


async def test_r11_a_workflow_step_does_not_make_an_incomplete_file_complete(
    intake: IntakeService,
) -> None:
    # Pieces asked here; a workflow status (even one dated before) does not turn the
    # file into one "being processed": it is incomplete until the pieces arrive.
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    await intake.request_pieces(
        created["tracking_code"],
        MissingPiecesCreate(pieces=["Plan de la salle"], due_on=date(2026, 6, 15)),
        now=datetime(2026, 5, 22, 9, 0, tzinfo=UTC),
    )
    await close_by_workflow(
        intake,
        created,
        datetime(2026, 5, 21, 9, 0, tzinfo=UTC),
        status="instruction",
        label="En cours d'instruction",
        final=False,
        transition="instruire",
        actions=[],
    )
    kept = await intake.get_request(created["tracking_code"])
    assert kept.status.value == "incomplete"
    done = await intake.pieces_received(
        created["tracking_code"], PiecesReceived(), now=datetime(2026, 5, 28, 9, 0, tzinfo=UTC)
    )
    assert done.status.value != "incomplete"


# Received 15 May 2026 (SVA): accepted from 16 July 00:00 Paris, 15 July 22:00 UTC. The
# scheduler passes just after; the workflow acted at 23:30 Paris on the last day.
RECEIVED = datetime(2026, 5, 15, 9, 0, tzinfo=UTC)
PASS = datetime(2026, 7, 15, 22, 0, 5, tzinfo=UTC)
IN_TIME = datetime(2026, 7, 15, 21, 30, tzinfo=UTC)


async def prefecture_transfer_read_late(
    intake: IntakeService, created: dict[str, Any], url: str = "https://transmissions.example/in"
) -> None:
    """The workflow's transfer to the prefecture, asked at 23:30 in Paris on the last day."""
    await transfer_by_workflow(
        intake,
        created,
        IN_TIME,
        tenant=None,
        administration_name="Préfecture de la Zone",
        administration_url=url,
    )


async def test_r10_r11_pieces_asked_in_time_but_consumed_after_the_pass_void_its_decision(
    intake: IntakeService,
) -> None:
    """SVA received 15 May: accepted from 16 July 00:00 Paris (15 July, 22:00 UTC). The
    workflow asked for pieces on 15 July at 23:30 Paris; the scheduler passed at 22:00:05
    UTC, before intake consumed that request: no acceptance was born. The pieces are asked
    (due 30 July), and the delay runs from their arrival on 20 July: to 20 September."""
    created = await submit(intake, RECEIVED)
    code = created["tracking_code"]
    assert await intake.decide_due(now=PASS) == 1
    await pieces_asked_by_workflow(intake, created, IN_TIME)
    followed = await intake.get_request(code)
    assert followed.status.value == "incomplete"
    assert [h.label for h in followed.history if h.status == "implicit_decision_void"] == [
        "Pas de décision implicite : le service avait demandé des pièces le 15 juillet 2026, "
        "avant l'échéance"
    ]
    assert "au plus tard le 30 juillet 2026" in " ".join(followed.receipts[-1].mentions)
    [void] = await outbox_events(intake.db, "intake.request.implicit_decision_void.v1")
    assert (void.data["decision"], void.data["act"]) == ("accepted", "pieces")
    await intake.pieces_received(code, PiecesReceived(), now=datetime(2026, 7, 20, 9, tzinfo=UTC))
    completed = await intake.get_request(code)
    assert completed.implicit_decision is not None
    assert completed.implicit_decision.decision_date == date(2026, 9, 20)
    assert await intake.decide_due(now=datetime(2026, 9, 20, 21, 59, tzinfo=UTC)) == 0
    assert await intake.decide_due(now=datetime(2026, 9, 20, 22, 0, tzinfo=UTC)) == 1


@pytest.mark.parametrize("destination", ["voisinville", "admiville"])
async def test_r10_r12_a_transfer_asked_in_time_voids_the_decision_only_if_made(
    intake: IntakeService, destination: str
) -> None:
    """The workflow transferred the request on 15 July at 23:30 Paris, consumed after the
    scheduler recorded the acceptance born at midnight. Made, the transfer voids it; refused
    (its own collectivité), it changes nothing and the acceptance stands."""
    await add_neighbour(intake.db)
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    assert await intake.decide_due(now=datetime(2026, 7, 15, 22, 0, 5, tzinfo=UTC)) == 1
    await transfer_by_workflow(intake, created, IN_TIME, tenant=destination)
    followed = await intake.get_request(created["tracking_code"])
    voids = await outbox_events(intake.db, "intake.request.implicit_decision_void.v1")
    if destination == "voisinville":
        assert followed.status.value == "transferred"
        assert [v.data["act"] for v in voids] == ["transfer"]
        assert followed.receipts[-1].kind.value == "avis_transmission"
        with pytest.raises(Problem):
            await intake.attestation(created["tracking_code"])
    else:
        assert followed.status.value == "implicitly_accepted"
        assert voids == []
        assert not [h for h in followed.history if h.status == "implicit_decision_void"]
        assert await intake.attestation(created["tracking_code"])


async def test_r10_r11_a_voided_decision_leaves_a_reopened_incomplete_file_incomplete(
    intake: IntakeService,
) -> None:
    # SVR received 15 May; pieces asked on 20 May for 1 June never came: 12 days of
    # suspension, rejected from 28 July 00:00 Paris (27 July, 22:00 UTC). The service
    # answered at 21:00 UTC and reopened at 21:30; the reopening arrives first, then the
    # scheduler's pass, then the answer: the decision is void, and the file, reopened, still
    # awaits its pieces.
    await add_neighbour(intake.db)
    created = await submit(
        intake,
        datetime(2026, 5, 15, 9, 0, tzinfo=UTC),
        tenant="voisinville",
        procedure="subvention",
    )
    code = created["tracking_code"]
    await intake.request_pieces(
        code,
        MissingPiecesCreate(pieces=["Budget prévisionnel"], due_on=date(2026, 6, 1)),
        now=datetime(2026, 5, 20, 9, 0, tzinfo=UTC),
    )
    followed = await intake.get_request(code)
    assert followed.implicit_decision is not None
    assert followed.implicit_decision.decision_date == date(2026, 7, 27)
    await close_by_workflow(
        intake, created, datetime(2026, 7, 27, 21, 30, tzinfo=UTC), sequence=2, **REOPENED
    )
    assert await intake.decide_due(now=datetime(2026, 7, 27, 22, 0, 5, tzinfo=UTC)) == 1
    await close_by_workflow(intake, created, datetime(2026, 7, 27, 21, 0, tzinfo=UTC), sequence=1)
    kept = await intake.get_request(code)
    assert kept.implicit_decision is not None and kept.implicit_decision.decided is None
    assert (kept.status.value, kept.status_label) == (
        "incomplete",
        "Dossier incomplet : pièces demandées",
    )


async def test_r5_r10_an_attestation_of_a_voided_acceptance_attests_nothing_after_a_new_one(
    intake: IntakeService,
) -> None:
    """The attestation issued on 16 July for the acceptance recorded at the pass stays void
    once the workflow's request for pieces of 15 July, 23:30 Paris, is consumed, and is not
    handed out again when a new acceptance is born: pieces in on 20 July, accepted from
    21 September 00:00 Paris (20 September, 22:00 UTC)."""
    created = await submit(intake, RECEIVED)
    code = created["tracking_code"]
    assert await intake.decide_due(now=PASS) == 1
    first = await intake.attestation(code, now=datetime(2026, 7, 16, 8, 0, tzinfo=UTC))
    _, first_token = await intake.receipt(first)
    await pieces_asked_by_workflow(intake, created, IN_TIME)
    assert (await intake.verify(first_token)).void is not None
    await intake.pieces_received(code, PiecesReceived(), now=datetime(2026, 7, 20, 9, tzinfo=UTC))
    assert await intake.decide_due(now=datetime(2026, 9, 20, 22, 0, 5, tzinfo=UTC)) == 1
    second = await intake.attestation(code, now=datetime(2026, 9, 21, 8, 0, tzinfo=UTC))
    assert second != first
    document, _ = await intake.receipt(second)
    assert "réputée acceptée depuis le 20 septembre 2026 à minuit" in " ".join(document.mentions)
    assert "15 juillet 2026" not in " ".join(document.mentions)
    checked = await intake.verify(first_token)
    assert checked.authentic and checked.void is not None
    assert "réputée acceptée depuis, à une autre date" in checked.void
    assert await intake.attestation(code) == second


async def test_r10_r13_an_outside_transfer_consumed_after_the_pass_holds_the_acceptance_back(
    intake: IntakeService,
) -> None:
    """A transfer to an outside administration takes effect once accepted there; asked in
    time, it holds the acceptance back while on its way (R13), even consumed after the
    pass recorded it: that acceptance is withdrawn, said so, and attests nothing."""
    created = await submit(intake, RECEIVED)
    assert await intake.decide_due(now=PASS) == 1
    await prefecture_transfer_read_late(intake, created)
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "processing"
    assert followed.history[-1].status == "implicit_decision_void"
    [void] = await outbox_events(intake.db, "intake.request.implicit_decision_void.v1")
    assert (void.data["decision"], void.data["act"]) == ("accepted", "transfer")
    with pytest.raises(Problem) as none:
        await intake.attestation(created["tracking_code"])
    assert none.value.status == 409
    assert await intake.decide_due(now=PASS + timedelta(hours=1)) == 0


async def test_r10_r13_an_answer_after_the_acceptance_leaves_a_late_transfer_unmade(
    intake: IntakeService,
) -> None:
    # Answered at 01:00 in Paris, after the acceptance was born, then the transfer asked at
    # 23:30 the day before is read: the service answered, the acceptance stands (as when
    # the transfer is read first: the answer then records the acceptance, R10).
    created = await submit(intake, RECEIVED)
    assert await intake.decide_due(now=PASS) == 1
    await close_by_workflow(intake, created, datetime(2026, 7, 15, 23, 0, tzinfo=UTC))
    await prefecture_transfer_read_late(intake, created)
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "implicitly_accepted"
    assert followed.history[-1].status == "transfer_cancelled"
    assert await outbox_events(intake.db, "intake.request.implicit_decision_void.v1") == []


async def test_r12_r13_a_late_transfer_refused_here_leaves_the_acceptance_and_says_why(
    intake: IntakeService,
) -> None:
    # Held back, then refused here (an address this guichet may not send to): the
    # acceptance stands, and the refusal is kept and told as if read in time.
    created = await submit(intake, RECEIVED)
    assert await intake.decide_due(now=PASS) == 1
    intake.settings.env = "production"
    intake.settings.transfer_allowed_hosts = ["transmissions.prefecture.example"]
    await prefecture_transfer_read_late(intake, created, "https://ailleurs.example/in")
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "implicitly_accepted"
    assert "transfer_refused" in [h.status for h in followed.history]
    [told] = await outbox_events(intake.db, "intake.request.transfer_refused.v1")
    assert told.data["request_id"] == created["id"]
    assert await outbox_events(intake.db, "intake.request.implicit_decision_void.v1") == []
    assert standing_decisions(intake, "accepted") == 1, "the void undone is not counted"


async def test_r10_a_voided_acceptance_yields_to_the_answer_the_workflow_gave_since(
    intake: IntakeService,
) -> None:
    """The workflow asked for pieces on 15 July at 23:30 Paris, then answered on 16 July;
    intake consumed the answer, then the request for pieces, after the pass. No acceptance
    was born (pieces were asked in time) and the answer decided: the file is closed, no
    pieces awaited, no new clock."""
    created = await submit(intake, RECEIVED)
    code = created["tracking_code"]
    assert await intake.decide_due(now=PASS) == 1
    await close_by_workflow(intake, created, datetime(2026, 7, 16, 8, 0, tzinfo=UTC))
    await pieces_asked_by_workflow(intake, created, IN_TIME)
    followed = await intake.get_request(code)
    assert (followed.status.value, followed.status_label) == ("closed", "Réponse envoyée")
    assert followed.implicit_decision is not None and followed.implicit_decision.decided is None
    assert not [r for r in followed.receipts if r.kind.value == "demande_pieces"]
    assert await intake.decide_due(now=datetime(2026, 12, 1, tzinfo=UTC)) == 0


async def test_r4_r23_voiding_by_a_request_for_pieces_keeps_the_ar_owed(
    intake: IntakeService,
) -> None:
    """A five-day SVA received on Friday 15 May, its AR unsigned (R23, owed by 22 May):
    accepted from 21 May 00:00 Paris. Pieces asked at 23:30 Paris on 20 May, consumed after
    the pass: the decision is void, and the AR is still owed and issued by the sweep."""
    await add_tenant(
        intake.db,
        "courtville",
        "Commune de Courtville",
        "Europe/Paris",
        procedures={"salle": {"regime": "sva", "delay_value": 5, "delay_unit": "days"}},
    )
    created = await submit(intake, RECEIVED, tenant="courtville", procedure="salle")
    await as_left_by_a_signing_failure(intake.db, created["tracking_code"], date(2026, 5, 22), None)
    assert await intake.decide_due(now=datetime(2026, 5, 20, 22, 0, 5, tzinfo=UTC)) == 1
    await pieces_asked_by_workflow(intake, created, datetime(2026, 5, 20, 21, 30, tzinfo=UTC))
    assert (await intake.get_request(created["tracking_code"])).status.value == "incomplete"
    assert await intake.issue_owed_receipts(now=datetime(2026, 5, 21, 9, 0, tzinfo=UTC)) == 1


async def test_r11_pieces_intake_cannot_accept_do_not_hold_back_the_events_behind(
    intake: IntakeService,
) -> None:
    # A piece named in one letter passes routing's checks but not intake's: the request is
    # refused and logged, the event consumed, so the events after it still apply.
    created = await submit(intake, RECEIVED)
    await pieces_asked_by_workflow(
        intake, created, datetime(2026, 5, 20, 9, 0, tzinfo=UTC), pieces=("X",)
    )
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "received"
    await pieces_asked_by_workflow(intake, created, datetime(2026, 5, 20, 10, 0, tzinfo=UTC))
    assert (await intake.get_request(created["tracking_code"])).status.value == "incomplete"


async def test_r12_a_transfer_intake_cannot_read_is_given_back_to_the_service(
    intake: IntakeService,
) -> None:
    # A circuit stored before routing checked it names a collectivité and an outside
    # administration's name: intake cannot make that transfer, and says so to routing,
    # which gives the request back to its service.
    await add_neighbour(intake.db)
    created = await submit(intake, RECEIVED)
    request_id = uuid.UUID(created["id"])
    await idempotent(
        intake.db, "intake.transfers", intake.on_transfer_requested, ServiceMetrics("t")
    )(
        TransferRequested(
            request_id=request_id,
            tracking_code=created["tracking_code"],
            tenant="voisinville",
            administration_name="Commune de Voisinville",
            administration_url=None,
            reason="Compétence de Voisinville.",
            requested_at=datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
        ).envelope(tenant="admiville", subject=str(request_id))
    )
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "received"
    [told] = await outbox_events(intake.db, "intake.request.transfer_refused.v1")
    assert "destination valide" in told.data["detail"]


async def test_r10_the_answer_a_void_acceptance_yields_to_stops_the_clock_for_good(
    intake: IntakeService,
) -> None:
    """Answered on 16 July after the pass, its request for pieces of 15 July consumed later:
    closed by that answer. Reopened on 20 July and asked for pieces on the 21st, the file
    gets no clock again: the answer stopped it for good (R10)."""
    created = await submit(intake, RECEIVED)
    code = created["tracking_code"]
    assert await intake.decide_due(now=PASS) == 1
    await close_by_workflow(intake, created, datetime(2026, 7, 16, 8, 0, tzinfo=UTC))
    await pieces_asked_by_workflow(intake, created, IN_TIME)
    assert (await intake.get_request(code)).status.value == "closed"
    await close_by_workflow(intake, created, datetime(2026, 7, 20, 8, 0, tzinfo=UTC), **REOPENED)
    asked = await intake.request_pieces(
        code,
        MissingPiecesCreate(pieces=["Plan de la salle"], due_on=date(2026, 8, 1)),
        now=datetime(2026, 7, 21, 8, 0, tzinfo=UTC),
    )
    assert asked.implicit_decision is not None
    assert asked.implicit_decision.decision_date is None
    assert await intake.decide_due(now=datetime(2026, 12, 1, tzinfo=UTC)) == 0


async def test_r10_an_answer_in_time_overtaken_by_a_later_final_status_still_voids(
    intake: IntakeService,
) -> None:
    # Answered at 23:30 Paris on the last day (rank 1), answered again on 16 July (rank 2);
    # rank 2 arrives first, after the pass: the acceptance stands so far, and the answer
    # of rank 1, given in time, then voids it.
    created = await submit(intake, RECEIVED)
    assert await intake.decide_due(now=PASS) == 1
    await close_by_workflow(
        intake,
        created,
        datetime(2026, 7, 16, 8, 0, tzinfo=UTC),
        sequence=2,
        from_status="repondue",
        label="Réponse définitive",
    )
    await close_by_workflow(intake, created, IN_TIME, sequence=1)
    kept = await intake.get_request(created["tracking_code"])
    assert kept.status.value == "closed"
    assert kept.implicit_decision is not None and kept.implicit_decision.decided is None


async def test_r12_a_transfer_refused_on_a_closed_request_reads_after_its_closing(
    intake: IntakeService,
) -> None:
    # Asked at 09:00, answered at 10:00, the transfer consumed after the answer: cancelled,
    # and the history says so after the closing it yields to.
    await add_neighbour(intake.db)
    created = await submit(intake, RECEIVED)
    await close_by_workflow(intake, created, datetime(2026, 5, 20, 10, 0, tzinfo=UTC))
    await transfer_by_workflow(intake, created, datetime(2026, 5, 20, 9, 0, tzinfo=UTC))
    history = (await intake.get_request(created["tracking_code"])).history
    assert [(h.status, h.at) for h in history[-2:]] == [
        ("repondue", datetime(2026, 5, 20, 10, 0, tzinfo=UTC)),
        ("transfer_cancelled", datetime(2026, 5, 20, 10, 0, tzinfo=UTC)),
    ]


@pytest.mark.parametrize("scheduler", ["passed before", "passes after"])
async def test_r10_r12_a_transfer_asked_after_silence_decided_is_not_made(
    intake: IntakeService, scheduler: str
) -> None:
    # Asked on 16 July at 10:00 Paris, after the acceptance born at midnight: not made,
    # and the acceptance recorded once. Recorded before, it closed the request: the
    # transfer is cancelled. Not yet, the request goes back to its service (an act made
    # in time and consumed later could still show that no decision was born).
    await add_neighbour(intake.db)
    created = await submit(intake, RECEIVED)
    if scheduler == "passed before":
        assert await intake.decide_due(now=PASS) == 1
    await transfer_by_workflow(intake, created, datetime(2026, 7, 16, 8, 0, tzinfo=UTC))
    if scheduler == "passes after":
        assert await intake.decide_due(now=datetime(2026, 7, 16, 9, 0, tzinfo=UTC)) == 1
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "implicitly_accepted"
    assert len(await outbox_events(intake.db, "intake.request.implicit_decision.v1")) == 1
    given_back = await outbox_events(intake.db, "intake.request.transfer_refused.v1")
    lines = [h.status for h in followed.history]
    if scheduler == "passed before":
        assert (given_back, lines[-1]) == ([], "transfer_cancelled")
    else:
        assert len(given_back) == 1 and "transfer_refused" in lines


async def test_r10_r12_a_refused_transfer_tells_no_decision_that_an_act_in_time_voids(
    intake: IntakeService,
) -> None:
    # Pieces asked in time (15 July, 12:00 Paris), a transfer asked on the 16th: intake
    # consumes the transfer first. The request goes back to its service, with no line
    # announcing a decision; the request for pieces then keeps silence from deciding.
    await add_neighbour(intake.db)
    created = await submit(intake, RECEIVED)
    await transfer_by_workflow(intake, created, datetime(2026, 7, 16, 8, 0, tzinfo=UTC))
    await pieces_asked_by_workflow(intake, created, datetime(2026, 7, 15, 10, 0, tzinfo=UTC))
    assert await intake.decide_due(now=datetime(2026, 7, 16, 9, 0, tzinfo=UTC)) == 0
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "incomplete"
    assert not [h for h in followed.history if "vaut acceptation" in h.label]
    assert len(await outbox_events(intake.db, "intake.request.transfer_refused.v1")) == 1


async def test_r12_a_transfer_with_no_destination_names_one_to_the_citizen(
    intake: IntakeService,
) -> None:
    created = await submit(intake, RECEIVED)
    await transfer_by_workflow(
        intake, created, datetime(2026, 5, 20, 9, 0, tzinfo=UTC), tenant=None
    )
    [back] = await outbox_events(intake.db, "intake.request.transfer_refused.v1")
    assert back.data["destination"] == "l'administration compétente"
    followed = await intake.get_request(created["tracking_code"])
    assert followed.history[-1].label == (
        "La transmission de votre demande à l'administration compétente n'a pas abouti : "
        "elle reste traitée par notre administration."
    )


async def test_r12_a_transfer_refused_on_a_transferred_request_reads_after_the_transfer(
    intake: IntakeService,
) -> None:
    # Two transfers relayed out of order: the one asked at 11:00 is made first, the one of
    # 10:00 then refused; its line reads after the transfer it yields to.
    await add_neighbour(intake.db)
    created = await submit(intake, RECEIVED)
    await transfer_by_workflow(intake, created, datetime(2026, 5, 20, 11, 0, tzinfo=UTC))
    await transfer_by_workflow(intake, created, datetime(2026, 5, 20, 10, 0, tzinfo=UTC))
    statuses = [h.status for h in (await intake.get_request(created["tracking_code"])).history]
    assert statuses.index("transfer_cancelled") > statuses.index("transferred")


async def test_r10_an_assignment_read_while_the_answer_commits_leaves_the_request_closed(
    intake: IntakeService,
) -> None:
    """Intake's consumers of routing's events run side by side. The assignment, read late,
    arrives while the service's answer is being written: it must not write back the status
    it read before that answer committed (found by the R30 end-to-end test over Kafka)."""
    created = await submit(intake, RECEIVED)
    answered = datetime(2026, 5, 20, 9, 0, tzinfo=UTC)
    assignment = RequestAssigned(
        request_id=created["id"],
        tracking_code=created["tracking_code"],
        procedure_code="reservation-salle",
        channel="web",
        service_code="accueil",
        service_name="Accueil de la mairie",
        rule="par défaut",
        assigned_at=RECEIVED,
    ).envelope(tenant="admiville", subject=created["id"])
    answer = answered_by_workflow(created, answered)
    assign = idempotent(
        intake.db, "intake.assignments", intake.on_request_assigned, ServiceMetrics("t")
    )
    async with intake.db.transaction() as session:
        await intake.on_status_changed(session, answer)
        assigning = asyncio.create_task(assign(assignment))
        # Long enough for the assignment to read the request and wait on its row.
        await asyncio.sleep(0.5)
    await assigning
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "closed"
    assert followed.assigned_service == "Accueil de la mairie"
