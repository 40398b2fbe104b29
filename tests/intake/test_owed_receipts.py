"""Receipts owed after a reception whose signing failed (R23), and their due dates (R3, R4).

Friday 15 May 2026, 09:00 UTC (11:00 in Paris): the AE is due within one working day,
Monday 18 May (Ascension is Thursday 14 May, Whit Monday 25 May); the AR within seven days,
22 May.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from guichet_intake import repository
from guichet_intake.app import create_app, start_scheduler
from guichet_intake.models import requests, signing_keys
from guichet_intake.schemas import TransferCreate
from guichet_intake.service import IntakeService, Keyring
from guichet_intake.settings import IntakeSettings
from guichet_intake.signing import SigningKey, generate_key
from guichet_plumbing.observability import ServiceMetrics
from tests.intake.helpers import (
    add_neighbour,
    add_tenant,
    as_left_by_a_signing_failure,
    body,
    close_by_workflow,
    outbox_events,
    submit,
)
from tests.support import serve

FRIDAY = datetime(2026, 5, 15, 9, 0, tzinfo=UTC)
TUESDAY = datetime(2026, 5, 19, 8, 0, tzinfo=UTC)


async def test_r23_owed_receipt_is_issued_by_the_sweep_once(intake: IntakeService) -> None:
    created = await submit(intake, FRIDAY)
    code = created["tracking_code"]
    await as_left_by_a_signing_failure(intake.db, code, date(2026, 5, 22), date(2026, 5, 18))
    late = await intake.overdue("admiville", now=TUESDAY)
    assert [(o.tracking_code, o.registration_due_on) for o in late.items] == [
        (code, date(2026, 5, 18))
    ]
    assert await intake.issue_owed_receipts(now=TUESDAY) == 1
    assert await intake.issue_owed_receipts(now=TUESDAY) == 0, "issued once"
    followed = await intake.get_request(code)
    assert followed.acknowledgement is not None
    assert followed.acknowledgement.kind.value == "accuse_reception"
    assert followed.acknowledgement.issued_at == TUESDAY
    assert "Votre demande a été reçue le 15 mai 2026." in followed.acknowledgement.mentions
    assert (await intake.overdue("admiville", now=TUESDAY)).count == 0
    issued = await outbox_events(intake.db, "intake.receipt.issued.v1")
    assert [e.data["kind"] for e in issued] == ["accuse_reception", "accuse_reception"]


async def test_r23_a_collectivite_whose_signing_fails_holds_up_no_other(
    intake: IntakeService, data_dir: Path
) -> None:
    """Admiville's stored key cannot be read: its owed AR waits (and is retried at every
    pass), while the one owed by Autreville, received after it, is issued."""
    await add_tenant(
        intake.db, "autreville", "Ville d'Autreville", "Europe/Paris", procedures={"salle": {}}
    )
    broken = await submit(intake, FRIDAY)
    fine = await submit(intake, FRIDAY.replace(minute=5), tenant="autreville", procedure="salle")
    for created in (broken, fine):
        await as_left_by_a_signing_failure(
            intake.db, created["tracking_code"], date(2026, 5, 22), date(2026, 5, 18)
        )
    async with intake.db.transaction() as session:
        await session.execute(
            sa.update(signing_keys)
            .where(signing_keys.c.tenant == "admiville")
            .values(private_pem=b"-----BEGIN PRIVATE KEY-----\nabimee\n-----END PRIVATE KEY-----\n")
        )
    # A process that has not cached Admiville's key yet, as after a restart.
    sweeper = IntakeService(intake.db, IntakeSettings(data_dir=data_dir), ServiceMetrics("s"))
    assert await sweeper.issue_owed_receipts(now=TUESDAY) == 1
    assert await sweeper.issue_owed_receipts(now=TUESDAY) == 0
    issued = await intake.get_request(fine["tracking_code"])
    assert [r.kind.value for r in issued.receipts] == ["accuse_reception"]
    assert (await intake.get_request(broken["tracking_code"])).receipts == []
    assert [o.tracking_code for o in (await intake.overdue("admiville", now=TUESDAY)).items] == [
        broken["tracking_code"]
    ]


async def test_r3_an_owed_ae_is_not_overdue_once_transferred_or_answered(
    intake: IntakeService,
) -> None:
    """Transferred (R12) or closed by the service's answer, a request owes no AE here any
    more: the sweep issues none and the overdue list, and its gauge, no longer count it."""
    await add_neighbour(intake.db)
    transferred, answered = [
        await submit(intake, FRIDAY, procedure=None, channel="email", payload={"n": n})
        for n in (1, 2)
    ]
    for created in (transferred, answered):
        await as_left_by_a_signing_failure(
            intake.db, created["tracking_code"], date(2026, 5, 22), date(2026, 5, 18)
        )
    await intake.transfer(
        transferred["tracking_code"],
        TransferCreate(tenant="voisinville", reason="Compétence de Voisinville"),
        now=FRIDAY,
    )
    await close_by_workflow(intake, answered, FRIDAY)
    assert (await intake.overdue("admiville", now=TUESDAY)).count == 0
    assert await intake.issue_owed_receipts(now=TUESDAY) == 0


async def test_r3_owed_registration_of_a_free_form_email_is_issued_by_the_sweep(
    intake: IntakeService,
) -> None:
    created = await submit(intake, FRIDAY, procedure=None, channel="email")
    code = created["tracking_code"]
    await as_left_by_a_signing_failure(intake.db, code, date(2026, 5, 22), date(2026, 5, 18))
    on_time = await intake.overdue("admiville", now=datetime(2026, 5, 18, 8, 0, tzinfo=UTC))
    assert on_time.count == 0, "due on Monday 18 May: not late that day"
    assert (await intake.overdue("admiville", now=TUESDAY)).count == 1
    assert await intake.issue_owed_receipts(now=TUESDAY) == 1
    followed = await intake.get_request(code)
    assert [r.kind.value for r in followed.receipts] == ["accuse_enregistrement"]
    assert "enregistré le 15 mai 2026" in followed.receipts[0].mentions[0]
    assert await intake.issue_owed_receipts(now=TUESDAY) == 0
    # The AR stays owed by qualification, within 7 days (R4): late only after 22 May.
    assert (await intake.overdue("admiville", now=TUESDAY)).count == 0
    late = await intake.overdue("admiville", now=datetime(2026, 5, 23, 8, 0, tzinfo=UTC))
    assert [o.receipt_due_on for o in late.items] == [date(2026, 5, 22)]


async def test_r3_r4_an_ae_the_sweep_issues_after_the_ars_due_day_promises_no_past_date(
    intake: IntakeService,
) -> None:
    # A free-form e-mail of Friday 15 May 2026 whose signing failed: its AR is owed by
    # 22 May. Swept on Monday 25 May, the AE cannot promise the AR by 22 May.
    created = await submit(intake, FRIDAY, procedure=None, channel="email")
    code = created["tracking_code"]
    await as_left_by_a_signing_failure(intake.db, code, date(2026, 5, 22), date(2026, 5, 18))
    assert await intake.issue_owed_receipts(now=datetime(2026, 5, 25, 8, 0, tzinfo=UTC)) == 1
    mentions = (await intake.get_request(code)).receipts[0].mentions
    assert mentions[0] == "Votre envoi a été enregistré le 15 mai 2026 par Commune d'Admiville."
    assert mentions[2].endswith("vous sera adressé dans les meilleurs délais.")


async def test_r23_the_scheduler_runs_the_sweep(intake: IntakeService) -> None:
    created = await submit(intake, FRIDAY)
    code = created["tracking_code"]
    await as_left_by_a_signing_failure(intake.db, code, date(2026, 5, 22), date(2026, 5, 18))
    stop = await start_scheduler(intake, interval=3600)
    try:
        for _ in range(200):  # its first pass runs at once; wait for it, whatever the machine
            if (await intake.get_request(code)).acknowledgement is not None:
                break
            await asyncio.sleep(0.05)
    finally:
        await stop()
    followed = await intake.get_request(code)
    assert followed.acknowledgement is not None
    assert followed.acknowledgement.kind.value == "accuse_reception"


def overdue_gauge(metrics: str) -> float:
    found = re.search(
        r'^guichet_intake_receipts_overdue\{tenant="admiville"\} (\S+)$', metrics, re.M
    )
    assert found, "the gauge is exported"
    return float(found.group(1))


async def test_r3_overdue_registration_counts_in_the_gauge(data_dir: Path) -> None:
    app = create_app(IntakeSettings(data_dir=data_dir, scheduler_interval=3600))
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        intake: IntakeService = app.state.intake
        stored = await intake.submit(body(procedure=None, channel="email"), None, now=FRIDAY)
        code = json.loads(stored.body)["tracking_code"]
        await as_left_by_a_signing_failure(intake.db, code, date(2026, 5, 22), date(2026, 5, 18))
        await intake.refresh_overdue_gauge(now=TUESDAY)
        assert overdue_gauge((await client.get("/metrics")).text) == 1.0
        await intake.issue_owed_receipts(now=TUESDAY)
        await intake.refresh_overdue_gauge(now=TUESDAY)
        assert overdue_gauge((await client.get("/metrics")).text) == 0.0


class FailsOnce(Keyring):
    """A keyring whose first use fails, as an unreachable key store would."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def active(self, *args: Any, **kwargs: Any) -> SigningKey:
        if not self.failed:
            self.failed = True
            raise RuntimeError("key store unreachable")
        return await super().active(*args, **kwargs)


async def test_r23_signing_failure_keeps_the_request_and_the_sweep_issues_its_receipt(
    intake: IntakeService,
) -> None:
    """Needs the submission path to store the request and its received event when building
    the receipt fails, with `receipt_issued_at` NULL, `receipt_due_on` = 7 days (R4) and, for
    an electronic send, `registration_due_on` = one working day (R3)."""
    intake.keyring = FailsOnce()
    created = await submit(intake, FRIDAY)
    assert created["acknowledgement"] is None
    async with intake.db.sessions() as session:
        row = (
            await session.execute(
                sa.select(requests).where(requests.c.tracking_code == created["tracking_code"])
            )
        ).one()
    assert row.receipt_issued_at is None
    assert (row.receipt_due_on, row.registration_due_on) == (date(2026, 5, 22), date(2026, 5, 18))
    assert [e.type for e in await outbox_events(intake.db)] == ["intake.request.received.v1"]
    assert (await intake.overdue("admiville", now=TUESDAY)).count == 1
    assert await intake.issue_owed_receipts(now=TUESDAY) == 1
    followed = await intake.get_request(created["tracking_code"])
    assert followed.acknowledgement is not None
    assert followed.acknowledgement.kind.value == "accuse_reception"


@pytest.mark.parametrize("fast_path", [True, False])
async def test_r23_a_key_that_cannot_be_stored_costs_the_request_nothing(
    intake: IntakeService, monkeypatch: pytest.MonkeyPatch, fast_path: bool
) -> None:
    """A tenant's first key fails to be stored (here its identifier is taken): the request
    is kept all the same, its receipt owed, on both submission paths. Needs the key's
    insert in a savepoint, or PostgreSQL aborts the transaction the request is in."""
    taken = generate_key("admiville", FRIDAY)
    async with intake.db.transaction() as session:
        await session.execute(sa.update(signing_keys).values(retired_at=FRIDAY))
        await repository.insert_signing_key(
            session,
            {**vars(taken), "tenant": "admiville", "retired_at": FRIDAY},
        )
    monkeypatch.setattr("guichet_intake.service.generate_key", lambda *_: taken)
    intake.keyring = Keyring()
    intake.fast_path = fast_path
    created = await submit(intake, FRIDAY)
    assert created["acknowledgement"] is None
    late = await intake.overdue("admiville", now=TUESDAY)
    assert [o.tracking_code for o in late.items] == [created["tracking_code"]]
