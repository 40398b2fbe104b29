"""A submission's events are written from plain data: each must be its model's own JSON."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from guichet_intake.events import PUBLISHED, ReceiptIssued, RequestReceived
from guichet_intake.service import IntakeService
from guichet_plumbing import tables
from guichet_plumbing.envelope import Envelope
from tests.intake.helpers import body

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
    for n, data in enumerate(submissions):
        stored = await intake.submit(data, None, now=AT + timedelta(minutes=n))
        assert stored.status_code == 201

    async with intake.db.sessions() as session:
        rows = await session.scalars(
            sa.select(tables.outbox.c.payload).order_by(tables.outbox.c.seq)
        )
        payloads = list(rows)
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
