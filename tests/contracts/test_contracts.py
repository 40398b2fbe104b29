"""contracts/ matches the code, and every consumer reads what its producer writes."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import jsonschema

from guichet_intake.events import AcknowledgementData, ApplicantContact, RequestReceived
from guichet_launcher.contracts import check
from guichet_notifications import events as notifications_events
from guichet_plumbing.envelope import Envelope, event_json_schema
from guichet_routing import events as routing_events

ROOT = Path(__file__).resolve().parents[2]


def test_committed_contracts_match_the_code() -> None:
    drift = check(ROOT / "contracts")
    assert drift == [], f"run `make contracts`; out of date: {drift}"


def received() -> Envelope:
    request_id = uuid.uuid4()
    return RequestReceived(
        request_id=request_id,
        tracking_code="ABCD-EFGH-JKMN-PQRS",
        procedure_code="reservation-salle",
        procedure_title="Réservation d'une salle municipale",
        channel="web",
        received_at=datetime(2026, 5, 15, 9, 30, tzinfo=UTC),
        reception_date=date(2026, 5, 15),
        applicant=ApplicantContact(name="Camille Martin", email="c@example.org", phone=None,
                                   postal_address=None),
        contact_preference="email",
        payload={"salle": "Salle des fêtes"},
        location=None,
        acknowledgement=AcknowledgementData(
            kind="accuse_reception", reception_date=date(2026, 5, 15),
            service_designation="Accueil", service_postal_address="1 place de la Mairie",
            service_email=None, service_phone=None, regime="sva",
            implicit_decision_date=date(2026, 7, 15), mentions=["Reçue le 15 mai 2026."]),
    ).envelope(tenant="admiville", subject=str(request_id))


def assigned() -> Envelope:
    request_id = uuid.uuid4()
    return routing_events.RequestAssigned(
        request_id=request_id, tracking_code="ABCD-EFGH-JKMN-PQRS",
        procedure_code="reservation-salle", channel="web", service_code="accueil",
        service_name="Accueil", rule="règle n° 1", assigned_at=datetime.now(UTC),
    ).envelope(tenant="admiville", subject=str(request_id))


def test_published_events_validate_against_their_committed_schema() -> None:
    for envelope, model in ((received(), RequestReceived),
                            (assigned(), routing_events.RequestAssigned)):
        schema = event_json_schema(model)
        jsonschema.validate(envelope.model_dump(mode="json"), schema)


def test_consumers_read_what_producers_write() -> None:
    from guichet_intake.events import RequestAssigned as IntakeView

    event = received()
    routing_view = routing_events.RequestReceived.model_validate(event.data)
    notifications_view = notifications_events.RequestReceived.model_validate(event.data)
    assert routing_view.procedure_code == "reservation-salle"
    assert notifications_view.acknowledgement is not None
    assert notifications_view.acknowledgement.mentions == ["Reçue le 15 mai 2026."]

    event = assigned()
    assert IntakeView.model_validate(event.data).service_name == "Accueil"
    assert notifications_events.RequestAssigned.model_validate(event.data).service_name == (
        "Accueil")
