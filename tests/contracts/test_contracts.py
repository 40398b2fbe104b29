"""contracts/ matches the code, and every consumer reads what its producer writes."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import jsonschema
import pytest

from guichet_intake import events as intake_events
from guichet_launcher.contracts import check
from guichet_launcher.services import SERVICES
from guichet_notifications import events as notifications_events
from guichet_plumbing.envelope import ConsumedEvent, EventData, event_json_schema
from guichet_routing import events as routing_events

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 5, 15, 9, 30, tzinfo=UTC)
REQUEST_ID = uuid.uuid4()

# One realistic instance of every event a service publishes.
SAMPLES: list[EventData] = [
    intake_events.RequestReceived(
        request_id=REQUEST_ID,
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        procedure_code="reservation-salle",
        procedure_title="Réservation d'une salle municipale",
        channel="web",
        received_at=NOW,
        reception_date=date(2026, 5, 15),
        applicant=intake_events.ApplicantContact(
            name="Camille Martin", email="c@example.org", phone=None, postal_address=None
        ),
        contact_preference="email",
        payload={"salle": "Salle des fêtes"},
        location=None,
        abusive=False,
    ),
    intake_events.ReceiptIssued(
        request_id=REQUEST_ID,
        receipt_id=uuid.uuid4(),
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        kind="accuse_reception",
        title="Accusé de réception",
        issued_at=NOW,
        mentions=["Votre demande a été reçue le 15 mai 2026."],
        document_url="http://127.0.0.1:8000/intake/v1/receipts/x.pdf",
    ),
    intake_events.ImplicitDecisionBorn(
        request_id=REQUEST_ID,
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        decision="accepted",
        last_day=date(2026, 7, 15),
        born_at=NOW,
    ),
    intake_events.ImplicitDecisionVoid(
        request_id=REQUEST_ID,
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        decision="accepted",
        act="answer",
        acted_at=NOW,
        voided_at=NOW,
    ),
    intake_events.RequestTransferred(
        request_id=REQUEST_ID,
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        destination="Commune de Voisinville",
        destination_tenant="voisinville",
        new_request_id=uuid.uuid4(),
        reason="Compétence",
    ),
    intake_events.SourceNoticed(
        source="email:c@example.org",
        request_id=REQUEST_ID,
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        name="Camille Martin",
        email="c@example.org",
        postal_address=None,
        title="Information sur le caractère abusif de vos envois",
        notice=["Des envois reçus de votre part ont été identifiés comme abusifs."],
        noticed_at=NOW,
    ),
    routing_events.StatusChanged(
        request_id=REQUEST_ID,
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        from_status="recue",
        status="en_cours",
        label="En cours de traitement",
        phase="processing",
        final=False,
        transition="prendre_en_charge",
        actions=["notify"],
        changed_at=NOW,
        sequence=2,
    ),
    routing_events.ServiceAlerted(
        request_id=REQUEST_ID,
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        service_code="voirie",
        service_name="Voirie",
        service_email="voirie@admiville.example",
        procedure_title="Signalement",
        channel="sms",
        due_at=NOW,
    ),
    routing_events.RequestAssigned(
        request_id=REQUEST_ID,
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        procedure_code="reservation-salle",
        channel="web",
        service_code="accueil",
        service_name="Accueil",
        rule="règle n° 1",
        assigned_at=NOW,
    ),
    intake_events.PiecesArrived(
        request_id=REQUEST_ID, tracking_code="ABCD-EFGH-JKMN-PQRS", received_on=date(2026, 5, 28)
    ),
    intake_events.TransferNotMade(
        request_id=REQUEST_ID,
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        destination="Préfecture de la Zone",
        detail="Adresse de réception inconnue (HTTP 404).",
        refused_at=NOW,
    ),
    routing_events.PiecesRequested(
        request_id=REQUEST_ID,
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        pieces=["Attestation d'assurance"],
        due_in_days=15,
        requested_by="agent-3",
        requested_at=NOW,
    ),
    routing_events.TransferRequested(
        request_id=REQUEST_ID,
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        tenant="voisinville",
        administration_name=None,
        administration_url=None,
        reason="Compétence",
        requested_at=NOW,
    ),
    routing_events.ServiceDigest(
        service_code="voirie",
        service_name="Voirie",
        service_email="voirie@admiville.example",
        timezone="Europe/Paris",
        period_start=NOW,
        period_end=NOW,
        new_total=1,
        overdue_total=0,
        overdue=[],
        new=[
            routing_events.DigestItem(
                request_id=REQUEST_ID,
                tracking_code="ABCD-EFGH-JKMN-PQRS",
                procedure_title="Signalement",
                channel="sms",
                status_label="Reçue",
                received_at=NOW,
                due_at=None,
            )
        ],
    ),
]

CONSUMER_VIEWS: list[type[ConsumedEvent]] = [
    routing_events.RequestReceived,
    intake_events.RequestAssigned,
    notifications_events.RequestReceived,
    notifications_events.ReceiptIssued,
    notifications_events.RequestAssigned,
    intake_events.StatusChanged,
    notifications_events.StatusChanged,
    notifications_events.ServiceAlerted,
    routing_events.PiecesReceived,
    routing_events.TransferRefused,
    intake_events.PiecesRequested,
    intake_events.TransferRequested,
    notifications_events.ServiceDigest,
    notifications_events.SourceNoticed,
]


def test_committed_contracts_match_the_code() -> None:
    drift = check(ROOT / "contracts")
    assert drift == [], f"run `make contracts`; out of date: {drift}"


def test_every_published_event_has_a_sample() -> None:
    published = {e.event_type for spec in SERVICES for e in spec.events}
    sampled = {type(s).event_type for s in SAMPLES}
    assert published - sampled <= {"gateway.consultation.recorded.v1"}  # tested in gateway


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).event_type)
def test_published_events_validate_against_their_schema(sample: EventData) -> None:
    envelope = sample.envelope(tenant="admiville", subject=str(REQUEST_ID))
    jsonschema.validate(envelope.model_dump(mode="json"), event_json_schema(type(sample)))


@pytest.mark.parametrize(
    "view", CONSUMER_VIEWS, ids=lambda v: f"{v.__module__.split('.')[0]}:{v.event_type}"
)
def test_consumers_read_what_producers_write(view: type[ConsumedEvent]) -> None:
    [producer] = [s for s in SAMPLES if type(s).event_type == view.event_type]
    assert view.event_type in {e.event_type for spec in SERVICES for e in spec.events}
    envelope = producer.envelope(tenant="admiville", subject=str(REQUEST_ID))
    parsed = view.model_validate(envelope.data)
    if "request_id" in view.model_fields:  # a digest is about a service, not one request
        assert str(getattr(parsed, "request_id")) == str(REQUEST_ID)  # noqa: B009
    else:
        assert str(getattr(parsed, "new")[0].tracking_code) == "ABCD-EFGH-JKMN-PQRS"  # noqa: B009
