"""Incomplete files (R11): the applicant is told what, by when, and what the clock does."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

import pytest

from guichet_intake.schemas import (
    MissingPiecesCreate,
    PiecesReceived,
    ProcedureWrite,
    RequestPublic,
)
from guichet_intake.service import IntakeService
from guichet_plumbing.problems import Problem
from tests.intake.helpers import outbox_events, submit

ASSOCIATION = {
    "kind": "association",
    "name": "Les Amis du Parc",
    "rna": "W751234567",
    "email": "amis.parc@example.org",
}


async def complete_on(intake: IntakeService, code: str, day: date) -> RequestPublic:
    """Every awaited piece received on `day`, recorded by an agent that afternoon."""
    return await intake.pieces_received(
        code, PiecesReceived(received_on=day), now=datetime.combine(day, time(15), UTC)
    )


async def test_r11_sva_clock_starts_when_file_complete(intake: IntakeService) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    code = created["tracking_code"]
    asked = await intake.request_pieces(
        code,
        MissingPiecesCreate(pieces=["Attestation d'assurance"], due_on=date(2026, 6, 20)),
        now=datetime(2026, 5, 20, 9, 0, tzinfo=UTC),
    )
    assert asked.status.value == "incomplete"
    assert asked.implicit_decision is not None
    assert asked.implicit_decision.state == "waiting_pieces"
    assert asked.implicit_decision.decision_date is None
    notice = asked.receipts[-1]
    assert notice.kind.value == "demande_pieces"
    text = " ".join(notice.mentions)
    assert "Attestation d'assurance" in text
    assert "au plus tard le 20 juin 2026" in text
    assert "ne commencera à courir qu'à compter de la réception" in text
    # Décret 2015-1404 art. 8: the delay itself is stated.
    assert "Le délai de 2 mois au terme duquel votre demande sera réputée acceptée" in text

    done = await intake.pieces_received(
        code, PiecesReceived(), now=datetime(2026, 6, 3, 10, 0, tzinfo=UTC)
    )
    # Complete on 3 June: deemed accepted at the end of 3 August.
    assert done.implicit_decision is not None
    assert done.implicit_decision.decision_date == date(2026, 8, 3)
    assert done.status.value == "received"
    assert done.receipts[-1].kind.value == "accuse_reception"
    receipt = " ".join(done.receipts[-1].mentions)
    assert "reçue le 15 mai 2026" in receipt
    # Received 15 May but complete on 3 June: the receipt says from when the 2 months run.
    assert (
        "dans un délai de 2 mois courant à compter du 3 juin 2026, et si votre dossier est "
        "complet, elle sera réputée acceptée le 3 août 2026 à minuit (soit à compter du "
        "4 août 2026 à 0 h)." in receipt
    )
    assert "Le délai court à compter de la réception des pièces manquantes." in receipt
    assert not re.search(r"\d{4}-\d{2}-\d{2}", receipt), "French dates only"
    assert "Pièces reçues le 3 juin 2026" in done.history[-2].label


async def test_r11_svr_incomplete_file_answered_early(intake: IntakeService) -> None:
    created = await submit(
        intake,
        datetime(2026, 5, 15, 9, 0, tzinfo=UTC),
        procedure="subvention-quartier",
        applicant=ASSOCIATION,
    )
    code = created["tracking_code"]
    asked = await intake.request_pieces(
        code,
        MissingPiecesCreate(pieces=["Budget prévisionnel"], due_on=date(2026, 6, 20)),
        now=datetime(2026, 5, 20, 9, 0, tzinfo=UTC),
    )
    assert asked.implicit_decision is not None
    assert asked.implicit_decision.state == "suspended"
    # Suspended 20 May → 20 June (31 days) if never produced: 15 July + 31 = 15 August.
    assert asked.implicit_decision.decision_date == date(2026, 8, 15)
    text = " ".join(asked.receipts[-1].mentions)
    assert "suspendu" in text
    assert "réputée rejetée le 15 août 2026 à minuit (soit à compter du 16 août 2026 à 0 h)" in text
    assert "Le délai de 2 mois au terme duquel votre demande sera réputée rejetée" in text

    done = await complete_on(intake, code, date(2026, 5, 30))
    # Produced 30 May: 10 days of suspension, 15 July + 10 = 25 July.
    assert done.implicit_decision is not None
    assert done.implicit_decision.decision_date == date(2026, 7, 25)
    assert done.implicit_decision.state == "running"
    receipt = " ".join(done.receipts[-1].mentions)
    assert done.receipts[-1].kind.value == "accuse_reception"
    assert "réputée rejetée le 25 juillet 2026 à minuit" in receipt
    # 2 months from 15 May would be 15 July: the receipt says why it is 25 July.
    assert "Délai suspendu du 20 mai 2026 au 30 mai 2026" in receipt
    assert not re.search(r"\d{4}-\d{2}-\d{2}", receipt), "French dates only"


@pytest.mark.parametrize("becomes", ["sva", "signalement"])
async def test_r5_an_ar_issued_later_keeps_the_frame_of_reception(
    intake: IntakeService, becomes: str
) -> None:
    """The catalogue changes between reception and the AR issued when the pieces arrive:
    the SVR request keeps its rejection date AND its means of appeal (R5), whatever the
    procedure became. Needs the procedure's kind and appeal text fixed with its regime."""
    created = await submit(
        intake,
        datetime(2026, 5, 15, 9, 0, tzinfo=UTC),
        procedure="subvention-quartier",
        applicant=ASSOCIATION,
    )
    [appeal] = [m for m in created["acknowledgement"]["mentions"] if "recours" in m]
    code = created["tracking_code"]
    await intake.request_pieces(
        code,
        MissingPiecesCreate(pieces=["Budget prévisionnel"], due_on=date(2026, 6, 20)),
        now=datetime(2026, 5, 20, 9, 0, tzinfo=UTC),
    )
    edited = {"sva": {"regime": "sva"}, "signalement": {"kind": "signalement", "regime": "none"}}
    await intake.put_procedure(
        "admiville",
        "subvention-quartier",
        ProcedureWrite(title="Subvention de quartier", service="citoyennete", **edited[becomes]),
    )
    done = await complete_on(intake, code, date(2026, 5, 30))
    # Suspended 20 → 30 May: 15 July + 10 days = 25 July, as received.
    ar = done.receipts[-1]
    assert ar.kind.value == "accuse_reception"
    assert any("réputée rejetée le 25 juillet 2026 à minuit" in m for m in ar.mentions)
    assert appeal in ar.mentions


@pytest.mark.parametrize("due_on", [date(2026, 5, 19), date(9999, 12, 31)])
async def test_r11_deadline_in_the_past_or_beyond_a_year_is_refused_naming_the_field(
    intake: IntakeService, due_on: date
) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    with pytest.raises(Problem) as refused:
        await intake.request_pieces(
            created["tracking_code"],
            MissingPiecesCreate(pieces=["RIB"], due_on=due_on),
            now=datetime(2026, 5, 20, 9, 0, tzinfo=UTC),
        )
    assert refused.value.status == 422
    assert refused.value.invalid_params
    assert refused.value.invalid_params[0].name == "due_on"


async def test_r11_pieces_received_when_none_awaited_is_a_conflict(
    intake: IntakeService,
) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    with pytest.raises(Problem) as refused:
        await intake.pieces_received(created["tracking_code"], PiecesReceived())
    assert refused.value.status == 409


async def test_r11_pieces_request_reaches_the_applicant_as_a_signed_notice(
    intake: IntakeService,
) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    await intake.request_pieces(
        created["tracking_code"],
        MissingPiecesCreate(pieces=["Plan de la salle"], due_on=date(2026, 6, 1)),
        now=datetime(2026, 5, 16, 9, 0, tzinfo=UTC),
    )
    issued = await outbox_events(intake.db, "intake.receipt.issued.v1")
    assert [e.data["kind"] for e in issued] == ["accuse_reception", "demande_pieces"]
    notice = (await intake.get_request(created["tracking_code"])).receipts[-1]
    assert (await intake.verify(notice.token)).authentic


async def test_r11_a_pieces_notice_without_an_implicit_regime_says_silence_decides_nothing(
    intake: IntakeService,
) -> None:
    # A report on the public road seeks no decision: the notice says which pieces, by when,
    # and that no delay runs for silence to accept or reject anything.
    created = await submit(
        intake,
        datetime(2026, 5, 15, 9, 0, tzinfo=UTC),
        procedure="signalement-voirie",
        location={"latitude": 48.85, "longitude": 2.35},
    )
    await intake.request_pieces(
        created["tracking_code"],
        MissingPiecesCreate(pieces=["Photographie du nid-de-poule"], due_on=date(2026, 6, 1)),
        now=datetime(2026, 5, 16, 9, 0, tzinfo=UTC),
    )
    notice = (await intake.get_request(created["tracking_code"])).receipts[-1]
    assert notice.kind.value == "demande_pieces"
    assert notice.mentions[1:] == [
        "Le silence gardé sur votre demande ne vaut pas décision : elle sera instruite dès "
        "la réception de ces pièces."
    ]


async def test_r11_a_pieces_notice_before_qualification_states_both_rules_not_one(
    intake: IntakeService,
) -> None:
    # Received without a procedure on 15 May, pieces asked on the 16th: which rule applies
    # is not known yet. Qualified the next day as an SVA procedure, silence will accept it
    # from the pieces' arrival on the 20th, so the notice must not have said otherwise: it
    # states both rules, and that the AR will say which applies (R11).
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC), procedure=None)
    code = created["tracking_code"]
    await intake.request_pieces(
        code,
        MissingPiecesCreate(pieces=["Plan de la salle"], due_on=date(2026, 6, 1)),
        now=datetime(2026, 5, 16, 9, 0, tzinfo=UTC),
    )
    await intake.qualify(code, "reservation-salle", now=datetime(2026, 5, 17, 9, 0, tzinfo=UTC))
    followed = await complete_on(intake, code, date(2026, 5, 20))
    assert followed.implicit_decision is not None
    assert followed.implicit_decision.decision_date == date(2026, 7, 20)
    [notice] = [r for r in followed.receipts if r.kind.value == "demande_pieces"]
    assert notice.mentions[1:] == [
        "L'accusé de réception de votre demande vous indiquera si le silence gardé sur elle "
        "vaut acceptation, rejet, ou ne vaut pas décision. S'il vaut acceptation, le délai ne "
        "commencera à courir qu'à compter de la réception de ces pièces ; s'il vaut rejet, il "
        "est suspendu jusqu'à leur réception, et au plus tard jusqu'à la date limite ci-dessus."
    ]


async def test_r11_file_complete_not_before_the_last_request_for_pieces(
    intake: IntakeService,
) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    code = created["tracking_code"]
    for asked_at in (
        datetime(2026, 5, 20, 9, 0, tzinfo=UTC),
        datetime(2026, 6, 1, 9, 0, tzinfo=UTC),
    ):
        await intake.request_pieces(
            code, MissingPiecesCreate(pieces=["RIB"], due_on=date(2026, 6, 20)), now=asked_at
        )
    # Still incomplete on 1 June: the file cannot have been complete on 25 May.
    with pytest.raises(Problem) as too_early:
        await intake.pieces_received(
            code,
            PiecesReceived(received_on=date(2026, 5, 25)),
            now=datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
        )
    assert too_early.value.status == 422
    assert "(le 1er juin 2026)" in too_early.value.detail
    assert too_early.value.invalid_params
    assert too_early.value.invalid_params[0].name == "received_on"
    # Complete on 2 June: SVA deemed accepted at the end of 2 August 2026.
    done = await complete_on(intake, code, date(2026, 6, 2))
    assert done.implicit_decision is not None
    assert done.implicit_decision.decision_date == date(2026, 8, 2)
