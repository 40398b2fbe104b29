"""Receipt of requests and the acknowledgement's content (R1, R5, R6, R22, R23).

Every date below is computed by hand in the test, from the instant it submits at.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from guichet_intake import service
from guichet_intake.models import requests
from guichet_intake.schemas import RequestCreate
from guichet_plumbing import tables
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.problems import Problem


def body(**changes: Any) -> RequestCreate:
    data: dict[str, Any] = {
        "tenant": "admiville",
        "procedure": "reservation-salle",
        "channel": "web",
        "applicant": {"name": "Camille Martin", "email": "camille.martin@example.org"},
    }
    data.update(changes)
    return RequestCreate.model_validate(data)


async def submit(db: Database, now: datetime, **changes: Any) -> dict[str, Any]:
    stored = await service.submit(db, body(**changes), None, now=now)
    assert stored.status_code == 201
    created: dict[str, Any] = json.loads(stored.body)
    return created


async def outbox_events(db: Database) -> list[Envelope]:
    async with db.sessions() as session:
        rows = await session.scalars(sa.select(tables.outbox.c.payload))
        return [Envelope.from_bytes(raw) for raw in rows]


async def test_r5_sva_receipt_states_date_service_and_attestation(intake_db: Database) -> None:
    created = await submit(intake_db, datetime(2026, 5, 15, 9, 30, tzinfo=UTC))
    ack = created["acknowledgement"]
    assert ack["reception_date"] == "2026-05-15"
    assert ack["service"] == {
        "code": "accueil",
        "designation": "Direction de l'accueil, du courrier et de la location de salles",
        "postal_address": "Hôtel de ville, 1 place de la Mairie, 99999 Admiville",
        "email": "accueil@admiville.example",
        "phone": "01 99 00 00 03",
    }
    # 15 May + 2 months: deemed accepted at the end of 15 July.
    assert ack["implicit_decision"]["decision_date"] == "2026-07-15"
    text = " ".join(ack["mentions"])
    assert "reçue le 15 mai 2026" in text
    assert "réputée acceptée le 15 juillet 2026 à minuit" in text
    assert "attestation d'acceptation implicite" in text
    assert "accueil@admiville.example" in text and "01 99 00 00 03" in text


async def test_r5_svr_receipt_states_rejection_date_and_means_of_appeal(
    intake_db: Database,
) -> None:
    # Received 31 December: two months end on the last day of February (28 in 2027).
    created = await submit(
        intake_db, datetime(2026, 12, 31, 10, 0, tzinfo=UTC), procedure="subvention-quartier"
    )
    ack = created["acknowledgement"]
    assert ack["implicit_decision"]["regime"] == "svr"
    assert ack["implicit_decision"]["decision_date"] == "2027-02-28"
    text = " ".join(ack["mentions"])
    assert "réputée rejetée le 28 février 2027 à minuit" in text
    assert "recours" in text and "tribunal administratif" in text
    assert "attestation" not in text


async def test_r1_document_delivery_procedure_owes_no_receipt(intake_db: Database) -> None:
    created = await submit(
        intake_db, datetime(2026, 3, 2, 8, 0, tzinfo=UTC), procedure="acte-etat-civil"
    )
    assert created["acknowledgement"] is None
    [event] = await outbox_events(intake_db)
    assert event.data["acknowledgement"] is None, "no AR e-mail is owed either"


async def test_r22_request_entered_at_counter_gets_same_receipt_and_deadline(
    intake_db: Database,
) -> None:
    at = datetime(2026, 5, 15, 9, 30, tzinfo=UTC)
    web = await submit(intake_db, at)
    counter = await submit(
        intake_db,
        at,
        channel="counter",
        contact_preference="letter",
        applicant={
            "name": "Jean Dupont",
            "postal_address": {
                "street": "2 rue Haute",
                "postal_code": "99999",
                "city": "Admiville",
            },
        },
    )
    assert counter["channel"] == "counter"
    for key in ("reception_date", "service", "implicit_decision"):
        assert counter["acknowledgement"][key] == web["acknowledgement"][key]


async def test_reception_date_is_local_23h30_utc_in_winter_is_next_day_in_paris(
    intake_db: Database,
) -> None:
    # 23:30 UTC on 14 January is 00:30 on 15 January in Paris (UTC+1).
    created = await submit(intake_db, datetime(2026, 1, 14, 23, 30, tzinfo=UTC))
    assert created["reception_date"] == "2026-01-15"
    assert created["received_at"] == "2026-01-14T23:30:00Z"
    # 15 January + 2 months = 15 March.
    assert created["acknowledgement"]["implicit_decision"]["decision_date"] == "2026-03-15"


async def test_r23_request_stored_and_event_staged_in_one_commit(intake_db: Database) -> None:
    created = await submit(intake_db, datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    async with intake_db.sessions() as session:
        stored = (
            await session.execute(
                sa.select(requests).where(requests.c.id == uuid.UUID(created["id"]))
            )
        ).one()
    assert stored.tracking_code == created["tracking_code"]
    [event] = await outbox_events(intake_db)
    assert event.type == "intake.request.received.v1"
    assert event.subject == created["id"]
    assert event.data["acknowledgement"]["mentions"] == created["acknowledgement"]["mentions"]


async def test_r23_nothing_stored_when_the_request_is_refused(intake_db: Database) -> None:
    with pytest.raises(Problem) as refused:
        await service.submit(intake_db, body(procedure="signalement-voirie"), None)
    assert refused.value.status == 422
    assert refused.value.invalid_params and refused.value.invalid_params[0].name == "location"
    async with intake_db.sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(requests)) == 0
    assert await outbox_events(intake_db) == []


async def test_r6_receipt_address_is_the_applicant_email_in_the_event(
    intake_db: Database,
) -> None:
    await submit(intake_db, datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    [event] = await outbox_events(intake_db)
    assert event.data["applicant"]["email"] == "camille.martin@example.org"


async def test_same_idempotency_key_replays_and_other_body_conflicts(intake_db: Database) -> None:
    first = await service.submit(intake_db, body(), "key-1")
    again = await service.submit(intake_db, body(), "key-1")
    assert again == first
    with pytest.raises(Problem) as conflict:
        await service.submit(intake_db, body(channel="email"), "key-1")
    assert conflict.value.status == 409
    async with intake_db.sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(requests)) == 1


async def test_unknown_tenant_and_procedure_name_the_field(intake_db: Database) -> None:
    for changes, field in (({"tenant": "nulle-part"}, "tenant"), ({"procedure": "x"}, "procedure")):
        with pytest.raises(Problem) as refused:
            await service.submit(intake_db, body(**changes), None)
        assert refused.value.status == 404
        assert refused.value.invalid_params and refused.value.invalid_params[0].name == field


def test_tracking_codes_are_unguessable_and_forgiving_when_read_aloud() -> None:
    codes = {service.new_tracking_code() for _ in range(1000)}
    assert len(codes) == 1000
    code = codes.pop()
    assert len(code) == 19 and code.count("-") == 3
    assert service.normalise_tracking_code(code.lower().replace("-", " ")) == code
    assert service.normalise_tracking_code("o1il-0000-0000-0000") == "0111-0000-0000-0000"


def test_french_dates() -> None:
    assert service.french_date(date(2026, 7, 1)) == "1er juillet 2026"
    assert service.french_date(date(2027, 2, 28)) == "28 février 2027"
