"""What intake writes from plain data, its events and its receipts' documents, must be
exactly its model's own JSON."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from guichet_intake.documents import ReceiptDocument
from guichet_intake.events import PUBLISHED, ReceiptIssued, RequestReceived
from guichet_intake.models import receipts
from guichet_intake.schemas import MissingPiecesCreate, ReceiptKind, TransferCreate
from guichet_intake.service import IntakeService, _json_instant
from guichet_plumbing.envelope import Envelope, written
from tests.intake.helpers import add_neighbour, body, outbox_payloads, submit

AT = datetime(2026, 5, 15, 9, 0, tzinfo=UTC)
MODELS = {event.event_type: event for event in PUBLISHED}
ADDRESS = {"street": "2 rue Haute", "postal_code": "99999", "city": "Admiville"}


async def test_submission_events_are_their_models_own_json(intake: IntakeService) -> None:
    submissions = [
        body(),  # an AR
        body(procedure=None),  # an AE
        body(  # a letter: postal address, no e-mail
            procedure=None,
            channel="mail",
            contact_preference="letter",
            applicant={"name": "Jean Dupont", "postal_address": ADDRESS},
        ),
        body(procedure="signalement-voirie", location={"latitude": 48.85, "longitude": 2.35}),
        # What orjson cannot write (an integer past 64 bits) and what it writes its own way.
        body(payload={"big": 2**70, "small": 4e-06, "nul": "a\x00b", "list": [1.5, None]}),
        # The third identical send is flagged (R9): abusive, no receipt.
        *[body(payload={"même": "contenu"})] * 3,
    ]
    answers = []
    for n, data in enumerate(submissions):
        stored = await intake.submit(data, None, now=AT + timedelta(minutes=n))
        assert stored.status_code == 201
        answers.append(json.loads(stored.body))

    payloads = await outbox_payloads(intake.db)
    # Values too, not only their shape: the first submission's two events in full.
    first, ar = answers[0], answers[0]["acknowledgement"]
    assert Envelope.from_bytes(payloads[0]).data == {
        "request_id": first["id"],
        "tracking_code": first["tracking_code"],
        "procedure_code": "reservation-salle",
        "procedure_title": "Réservation d'une salle municipale",
        "procedure_kind": "demande",
        "channel": "web",
        "received_at": "2026-05-15T09:00:00Z",
        "reception_date": "2026-05-15",
        "applicant": {
            "name": "Camille Martin",
            "email": "camille.martin@example.org",
            "phone": None,
            "postal_address": None,
        },
        "contact_preference": "email",
        "payload": {"salle": "Salle des fêtes"},
        "location": None,
        "abusive": False,
    }
    assert Envelope.from_bytes(payloads[1]).data == {
        "request_id": first["id"],
        "receipt_id": ar["receipt_id"],
        "tracking_code": first["tracking_code"],
        "kind": "accuse_reception",
        "title": "Accusé de réception",
        "issued_at": "2026-05-15T09:00:00Z",
        "mentions": ar["mentions"],
        "document_url": f"{intake.settings.public_url}/v1/receipts/{ar['receipt_id']}.pdf",
    }
    seen: Counter[str] = Counter()
    for raw in payloads:
        envelope = Envelope.from_bytes(raw)
        # Byte for byte what `Envelope` itself writes, and a `data` that is exactly the
        # model's dump: no field missing, none extra, every value in the model's form.
        assert envelope.to_bytes() == raw
        model = MODELS[envelope.type].model_validate(envelope.data)
        assert model.model_dump(mode="json") == envelope.data
        assert envelope.subject == envelope.data["request_id"]
        seen[envelope.type] += 1
    received = [Envelope.from_bytes(raw) for raw in payloads]
    flagged = [e.data["abusive"] for e in received if e.type == RequestReceived.event_type]
    assert flagged.count(True) == 1
    # 8 requests; a receipt each, but for the letter (its AR is owed, within 7 days: R4)
    # and the flagged repeat (R9).
    assert seen == {RequestReceived.event_type: 8, ReceiptIssued.event_type: 6}


@pytest.mark.parametrize(
    ("tenant", "subject", "occurred_at"),
    [
        ("admiville", "r-1", datetime(2026, 5, 15, 9, 0)),  # no time zone
        ("a" * 65, "r-1", AT),
        ("admiville", "", AT),
    ],
)
def test_an_envelope_consumers_would_refuse_is_refused_when_written(
    tenant: str, subject: str, occurred_at: datetime
) -> None:
    with pytest.raises(ValidationError):
        written(ReceiptIssued, {}, tenant=tenant, subject=subject, occurred_at=occurred_at)


async def test_receipt_documents_are_their_models_own_json(intake: IntakeService) -> None:
    """Every kind of receipt: the stored document is `ReceiptDocument`'s JSON, and it is
    exactly what the token signs."""
    await add_neighbour(intake.db)
    at = datetime(2026, 5, 15, 9, 0, 0, 120_000, tzinfo=UTC)  # a clock's microseconds
    accepted = await submit(intake, at)
    qualified = await submit(intake, at + timedelta(seconds=1), procedure=None)
    await intake.qualify(qualified["tracking_code"], "reservation-salle", now=at + timedelta(1))
    await intake.request_pieces(
        qualified["tracking_code"],
        MissingPiecesCreate(pieces=["Plan de la salle"], due_on=date(2026, 6, 15)),
        now=at + timedelta(2),
    )
    moved = await submit(intake, at + timedelta(seconds=2))
    await intake.transfer(
        moved["tracking_code"],
        TransferCreate(tenant="voisinville", reason="Salle de Voisinville."),
        now=datetime(2026, 5, 20, 9, 0, 0, 1, tzinfo=UTC),
    )
    await intake.decide_due(now=datetime(2026, 7, 16, tzinfo=UTC))
    await intake.attestation(accepted["tracking_code"], now=datetime(2026, 7, 20, 8, 0, tzinfo=UTC))

    async with intake.db.sessions() as session:
        stored = (await session.execute(sa.select(receipts.c.document, receipts.c.token))).all()
    assert {document["kind"] for document, _ in stored} == set(ReceiptKind)
    for document, token in stored:
        assert ReceiptDocument.model_validate(document).model_dump(mode="json") == document
        signed = token.split(".")[1]
        assert json.loads(base64.urlsafe_b64decode(signed + "=" * (-len(signed) % 4))) == document


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 5, 15, 9, 0, tzinfo=UTC),
        datetime(2026, 5, 15, 9, 0, 0, 120_000, tzinfo=UTC),
        datetime(2026, 5, 15, 9, 0, 0, 1, tzinfo=ZoneInfo("America/Martinique")),
        datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-4))),
    ],
)
def test_a_receipts_instants_are_written_as_pydantic_writes_them(at: datetime) -> None:
    assert json.dumps(_json_instant(at)) == TypeAdapter(AwareDatetime).dump_json(at).decode()


def test_a_receipt_is_never_written_with_a_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        _json_instant(datetime(2026, 5, 15, 9, 0))
