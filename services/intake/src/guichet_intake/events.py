"""Events intake publishes, and its own view of those it consumes."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel

from guichet_plumbing.envelope import ConsumedEvent, EventData


class ApplicantContact(BaseModel):
    name: str
    email: str | None
    phone: str | None
    postal_address: str | None


class AcknowledgementData(BaseModel):
    kind: str
    reception_date: date
    service_designation: str
    service_postal_address: str
    service_email: str | None
    service_phone: str | None
    regime: str
    implicit_decision_date: date | None
    mentions: list[str]


class RequestReceived(EventData):
    """A request was received and timestamped; carries the acknowledgement owed to the applicant."""

    event_type: ClassVar[str] = "intake.request.received.v1"

    request_id: uuid.UUID
    tracking_code: str
    procedure_code: str
    procedure_title: str
    channel: str
    received_at: AwareDatetime
    reception_date: date
    applicant: ApplicantContact
    contact_preference: str
    payload: dict[str, Any]
    location: dict[str, Any] | None
    acknowledgement: AcknowledgementData | None


class RequestAssigned(ConsumedEvent):
    event_type: ClassVar[str] = "routing.request.assigned.v1"

    request_id: uuid.UUID
    service_code: str
    service_name: str
    assigned_at: AwareDatetime


PUBLISHED: tuple[type[EventData], ...] = (RequestReceived,)
