"""Implicit decisions born from silence (R10), and the SVA attestation (R5)."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pypdf import PdfReader

from guichet_intake import repository
from guichet_intake.app import start_scheduler
from guichet_intake.documents import render_pdf
from guichet_intake.schemas import MissingPiecesCreate, TransferCreate
from guichet_intake.service import IntakeService
from guichet_plumbing.problems import Problem
from tests.intake.helpers import (
    add_neighbour,
    add_tenant,
    close_by_workflow,
    completed_after_pieces,
    outbox_events,
    submit,
)

ASSOCIATION = {
    "kind": "association",
    "name": "Les Amis du Parc",
    "rna": "W751234567",
    "email": "amis.parc@example.org",
}


async def test_r10_sva_decision_born_at_midnight_paris_not_before(intake: IntakeService) -> None:
    # Received 15 May: deemed accepted at the end of 15 July, i.e. 16 July 00:00 Paris
    # (22:00 UTC on 15 July, summer time).
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    born = datetime(2026, 7, 15, 22, 0, tzinfo=UTC)
    assert await intake.decide_due(now=born - timedelta(seconds=1)) == 0
    assert await intake.decide_due(now=born) == 1
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "implicitly_accepted"
    assert followed.implicit_decision is not None
    assert followed.implicit_decision.decided == "accepted"
    assert followed.history[-1].at == born
    [event] = await outbox_events(intake.db, "intake.request.implicit_decision.v1")
    assert event.data["decision"] == "accepted"
    assert event.data["last_day"] == "2026-07-15"
    assert await intake.decide_due(now=born + timedelta(days=1)) == 0, "decided once"


async def test_r10_svr_decision_is_a_rejection_and_gives_no_attestation(
    intake: IntakeService,
) -> None:
    created = await submit(
        intake,
        datetime(2026, 5, 15, 9, 0, tzinfo=UTC),
        procedure="subvention-quartier",
        applicant=ASSOCIATION,
    )
    # 15 May + 2 months: deemed rejected at the end of 15 July, i.e. 16 July 00:00 Paris,
    # which is 22:00 UTC on 15 July in summer time (UTC+2).
    assert await intake.decide_due(now=datetime(2026, 7, 15, 21, 59, 59, tzinfo=UTC)) == 0
    assert await intake.decide_due(now=datetime(2026, 7, 15, 22, 0, 0, tzinfo=UTC)) == 1
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "implicitly_rejected"
    assert followed.history[-1].label == (
        "Rejetée implicitement : silence gardé jusqu'au 15 juillet 2026 à minuit "
        "(soit à compter du 16 juillet 2026 à 0 h)"
    )
    with pytest.raises(Problem) as refused:
        await intake.attestation(created["tracking_code"])
    assert refused.value.status == 409


async def test_r5_sva_attestation_of_implicit_acceptance_is_signed(
    intake: IntakeService,
) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    with pytest.raises(Problem):  # the last day itself: not yet accepted
        await intake.attestation(
            created["tracking_code"], now=datetime(2026, 7, 15, 21, 0, tzinfo=UTC)
        )
    await intake.decide_due(now=datetime(2026, 7, 16, tzinfo=UTC))
    receipt_id = await intake.attestation(
        created["tracking_code"], now=datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
    )
    assert await intake.attestation(created["tracking_code"]) == receipt_id, "issued once"
    document, token = await intake.receipt(receipt_id)
    assert document.kind == "attestation_acceptation_implicite"
    text = " ".join(document.mentions)
    assert (
        "réputée acceptée depuis le 15 juillet 2026 à minuit "
        "(soit à compter du 16 juillet 2026 à 0 h)." in text
    )
    assert "reçue le 15 mai 2026" in text
    assert (await intake.verify(token)).authentic


async def test_martinique_decision_is_born_at_local_midnight(intake: IntakeService) -> None:
    await add_tenant(
        intake.db,
        "schoelcher",
        "Ville de Schœlcher",
        "America/Martinique",
        "972",
        procedures={"salle": {"regime": "sva"}},
    )
    # 02:30 UTC on 15 May is still 14 May in Martinique (UTC-4): decision at the end of
    # 14 July, i.e. 15 July 00:00 Martinique = 04:00 UTC.
    created = await submit(
        intake, datetime(2026, 5, 15, 2, 30, tzinfo=UTC), tenant="schoelcher", procedure="salle"
    )
    assert created["reception_date"] == "2026-05-14"
    assert await intake.decide_due(now=datetime(2026, 7, 15, 3, 59, tzinfo=UTC)) == 0
    assert await intake.decide_due(now=datetime(2026, 7, 15, 4, 0, tzinfo=UTC)) == 1


async def test_r11_svr_pieces_never_produced_rejection_born_after_the_time_granted(
    intake: IntakeService,
) -> None:
    """The notice promised "réputée rejetée le 15 août 2026 à minuit": it must happen."""
    created = await submit(
        intake,
        datetime(2026, 5, 15, 9, 0, tzinfo=UTC),
        procedure="subvention-quartier",
        applicant=ASSOCIATION,
    )
    asked = await intake.request_pieces(
        created["tracking_code"],
        MissingPiecesCreate(pieces=["Budget prévisionnel"], due_on=date(2026, 6, 20)),
        now=datetime(2026, 5, 20, 9, 0, tzinfo=UTC),
    )
    assert asked.implicit_decision is not None
    assert asked.implicit_decision.state == "suspended"
    # Received 15 May, 2 months: 15 July. Suspended from 20 May to 20 June (11 days left
    # in May + 20 in June = 31 days), never produced: 15 July + 31 days = 15 August. Born
    # at the end of 15 August Paris = 16 August 00:00 CEST = 15 August 22:00 UTC.
    assert "réputée rejetée le 15 août 2026 à minuit" in " ".join(asked.receipts[-1].mentions)
    assert await intake.decide_due(now=datetime(2026, 8, 15, 21, 59, 59, tzinfo=UTC)) == 0
    assert await intake.decide_due(now=datetime(2026, 8, 15, 22, 0, 0, tzinfo=UTC)) == 1
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "implicitly_rejected"


async def test_r10_an_answer_given_after_silence_decided_leaves_the_decision_standing(
    intake: IntakeService,
) -> None:
    """Received 15 May: accepted from 16 July 00:00 Paris (15 July, 22:00 UTC). The service's
    answer of 20 July arrives before the scheduler's pass: the acceptance was born first and
    stands, the answer is recorded after it. An answer of 10 July, in time, stops the clock."""
    late = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC), payload={"n": 1})
    in_time = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC), payload={"n": 2})
    await close_by_workflow(intake, late, datetime(2026, 7, 20, 9, 0, tzinfo=UTC))
    await close_by_workflow(intake, in_time, datetime(2026, 7, 10, 9, 0, tzinfo=UTC))
    assert await intake.decide_due(now=datetime(2026, 7, 21, tzinfo=UTC)) == 0
    decided = await intake.get_request(late["tracking_code"])
    assert decided.status.value == "implicitly_accepted"
    assert decided.implicit_decision is not None
    assert decided.implicit_decision.decided == "accepted"
    assert [h.at for h in decided.history[-2:]] == [
        datetime(2026, 7, 15, 22, 0, tzinfo=UTC),
        datetime(2026, 7, 20, 9, 0, tzinfo=UTC),
    ]
    assert await intake.attestation(late["tracking_code"])
    answered = await intake.get_request(in_time["tracking_code"])
    assert answered.status.value == "closed"
    assert answered.implicit_decision is not None
    assert answered.implicit_decision.decided is None
    [born] = await outbox_events(intake.db, "intake.request.implicit_decision.v1")
    assert born.data["tracking_code"] == late["tracking_code"]


async def test_r10_an_answer_given_in_time_but_consumed_after_the_scheduler_voids_its_decision(
    intake: IntakeService,
) -> None:
    """Received 15 May: accepted from 16 July 00:00 Paris (15 July, 22:00 UTC). The service
    answered at 21:59:59 UTC; the scheduler passed at 22:00:05, before the answer's event
    reached intake: no decision was born, and none is left standing."""
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    assert await intake.decide_due(now=datetime(2026, 7, 15, 22, 0, 5, tzinfo=UTC)) == 1
    await close_by_workflow(intake, created, datetime(2026, 7, 15, 21, 59, 59, tzinfo=UTC))
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "closed"
    assert followed.implicit_decision is not None
    assert followed.implicit_decision.decided is None
    void = [h for h in followed.history if h.status == "implicit_decision_void"]
    assert [(h.at, h.label) for h in void] == [
        (
            datetime(2026, 7, 15, 22, 0, tzinfo=UTC),
            "Pas de décision implicite : le service avait répondu le 15 juillet 2026, "
            "avant l'échéance",
        )
    ]
    with pytest.raises(Problem) as refused:
        await intake.attestation(created["tracking_code"])
    assert refused.value.status == 409
    assert await intake.decide_due(now=datetime(2026, 7, 20, tzinfo=UTC)) == 0
    # The decision was announced; that it is void is announced too.
    [born] = await outbox_events(intake.db, "intake.request.implicit_decision.v1")
    [void_event] = await outbox_events(intake.db, "intake.request.implicit_decision_void.v1")
    assert born.subject == void_event.subject == str(followed.id)
    assert void_event.data["decision"] == "accepted"
    assert (void_event.data["act"], void_event.data["acted_at"]) == (
        "answer",
        "2026-07-15T21:59:59Z",
    )


@pytest.mark.parametrize("act", ["request_pieces", "transfer"])
async def test_r10_no_act_changes_a_request_whose_silence_has_decided(
    intake: IntakeService, act: str
) -> None:
    """Received 15 May: accepted from 16 July 00:00 Paris. On 16 July at 10:00, before the
    scheduler's pass, asking for pieces (a notice saying the delay has not started) or
    transferring (which would clear the clock) is refused; the acceptance is then recorded.
    The same acts on 15 July at 23:59 Paris are still in time."""
    await add_neighbour(intake.db)
    late = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC), payload={"n": 1})
    in_time = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC), payload={"n": 2})

    async def run(created: dict[str, Any], at: datetime) -> None:
        if act == "request_pieces":
            body = MissingPiecesCreate(pieces=["Plan de la salle"], due_on=date(2026, 7, 30))
            await intake.request_pieces(created["tracking_code"], body, now=at)
        else:
            body_ = TransferCreate(tenant="voisinville", reason="Salle intercommunale.")
            await intake.transfer(created["tracking_code"], body_, now=at)

    with pytest.raises(Problem) as refused:
        await run(late, datetime(2026, 7, 16, 8, 0, tzinfo=UTC))
    assert (refused.value.status, refused.value.slug) == (409, "implicit-decision-born")
    assert "15 juillet 2026 à minuit" in refused.value.detail
    await run(in_time, datetime(2026, 7, 15, 21, 59, tzinfo=UTC))
    assert await intake.decide_due(now=datetime(2026, 7, 16, 9, 0, tzinfo=UTC)) == 1
    decided = await intake.get_request(late["tracking_code"])
    assert decided.status.value == "implicitly_accepted"
    assert decided.receipts[-1].kind.value == "accuse_reception"  # no notice was sent
    kept = await intake.get_request(in_time["tracking_code"])
    assert kept.status.value == ("incomplete" if act == "request_pieces" else "transferred")


async def test_r9_an_abusive_send_qualified_later_gets_no_clock(intake: IntakeService) -> None:
    """A flagged send owes no AR (R9) and no silence runs on it, whether it named its
    procedure or was qualified afterwards: the scheduler never decides it."""
    at = datetime(2026, 5, 15, 9, 0, tzinfo=UTC)
    for minutes in (0, 3, 5):  # the third identical send within the window is flagged
        flagged = await submit(intake, at + timedelta(minutes=minutes), procedure=None)
    await intake.qualify(flagged["tracking_code"], "reservation-salle", now=at + timedelta(days=1))
    async with intake.db.sessions() as session:
        row = await repository.get_request_by_code(session, flagged["tracking_code"])
    assert (row.abusive, row.regime, row.clock_state) == (True, "sva", "none")
    followed = await intake.get_request(flagged["tracking_code"])
    assert followed.implicit_decision is not None
    assert followed.implicit_decision.decision_date is None
    assert await intake.decide_due(now=datetime(2026, 7, 17, tzinfo=UTC)) == 0


async def test_r5_the_attestation_says_from_when_the_delay_ran(intake: IntakeService) -> None:
    # SVA received 15 May 2026, pieces asked 20 May, in on 3 June: accepted at the end of
    # 3 August, two months from 3 June, not from 15 May (R11). The PDF says both dates.
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    code = created["tracking_code"]
    await completed_after_pieces(
        intake,
        code,
        asked=datetime(2026, 5, 20, 9, 0, tzinfo=UTC),
        due_on=date(2026, 6, 20),
        received=datetime(2026, 6, 3, 15, 0, tzinfo=UTC),
    )
    assert await intake.decide_due(now=datetime(2026, 8, 3, 22, 0, tzinfo=UTC)) == 1
    document, token = await intake.receipt(await intake.attestation(code))
    text = " ".join(
        page.extract_text() for page in PdfReader(io.BytesIO(render_pdf(document, token))).pages
    ).replace("\n", " ")
    assert "dans le délai de 2 mois, qui a couru à compter du 3 juin 2026." in text, text
    assert "réputée acceptée depuis le 3 août 2026 à minuit" in text


async def test_r10_an_attestation_of_a_decision_found_never_born_says_it_is_void(
    intake: IntakeService,
) -> None:
    # The scheduler records the acceptance at 22:00:05 UTC on 15 July, the citizen gets the
    # attestation at 22:01; then the service's answer of 21:59:59 arrives: no decision was
    # born. The attestation is authentic (it was signed) and says it proves nothing.
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    assert await intake.decide_due(now=datetime(2026, 7, 15, 22, 0, 5, tzinfo=UTC)) == 1
    issued = await intake.attestation(
        created["tracking_code"], now=datetime(2026, 7, 15, 22, 1, tzinfo=UTC)
    )
    _, token = await intake.receipt(issued)
    assert (await intake.verify(token)).void is None
    await close_by_workflow(intake, created, datetime(2026, 7, 15, 21, 59, 59, tzinfo=UTC))
    verified = await intake.verify(token)
    assert (verified.authentic, verified.document) == (True, "attestation_acceptation_implicite")
    assert verified.void is not None and "ne vaut pas acceptation" in verified.void


async def test_r5_concurrent_asks_get_one_attestation(intake: IntakeService) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    assert await intake.decide_due(now=datetime(2026, 7, 16, tzinfo=UTC)) == 1
    asked = await asyncio.gather(*(intake.attestation(created["tracking_code"]) for _ in range(5)))
    assert len(set(asked)) == 1
    issued = await outbox_events(intake.db, "intake.receipt.issued.v1")
    kinds = [e.data["kind"] for e in issued]
    assert kinds.count("attestation_acceptation_implicite") == 1


async def test_r10_silence_decides_even_while_an_owed_receipt_keeps_failing(
    intake: IntakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One task of the scheduler failing at every pass (here the R23 sweep) does not keep
    the others from running."""

    async def unreachable_key_store() -> int:
        raise RuntimeError("key store unreachable")

    monkeypatch.setattr(intake, "issue_owed_receipts", unreachable_key_store)
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    stop = await start_scheduler(intake, interval=3600)
    try:
        for _ in range(200):  # its first pass runs at once; wait for it, whatever the machine
            if (await intake.get_request(created["tracking_code"])).status.value != "received":
                break
            await asyncio.sleep(0.05)
    finally:
        await stop()
    decided = await intake.get_request(created["tracking_code"])
    assert decided.status.value == "implicitly_accepted"
