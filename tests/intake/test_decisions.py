"""Implicit decisions born from silence (R10), and the SVA attestation (R5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guichet_intake.service import IntakeService
from guichet_plumbing.problems import Problem
from tests.intake.helpers import add_tenant, outbox_events, submit

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
    assert await intake.decide_due(now=datetime(2026, 7, 16, 0, 0, tzinfo=UTC)) == 1
    followed = await intake.get_request(created["tracking_code"])
    assert followed.status.value == "implicitly_rejected"
    with pytest.raises(Problem) as refused:
        await intake.attestation(created["tracking_code"])
    assert refused.value.status == 409


async def test_r5_sva_attestation_of_implicit_acceptance_is_signed(
    intake: IntakeService,
) -> None:
    created = await submit(intake, datetime(2026, 5, 15, 9, 0, tzinfo=UTC))
    with pytest.raises(Problem):
        await intake.attestation(created["tracking_code"])  # not yet accepted
    await intake.decide_due(now=datetime(2026, 7, 16, tzinfo=UTC))
    receipt_id = await intake.attestation(
        created["tracking_code"], now=datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
    )
    assert await intake.attestation(created["tracking_code"]) == receipt_id, "issued once"
    document, token = await intake.receipt(receipt_id)
    assert document.kind == "attestation_acceptation_implicite"
    text = " ".join(document.mentions)
    assert "réputée acceptée depuis le 15 juillet 2026 à minuit" in text
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
