"""Notifications' own view of the events it consumes (it publishes none yet)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import ClassVar

from pydantic import AwareDatetime, BaseModel

from guichet_plumbing.envelope import ConsumedEvent, EventData


class Applicant(BaseModel):
    name: str
    email: str | None = None
    phone: str | None = None
    postal_address: str | None = None


class AcknowledgementView(BaseModel):
    kind: str
    reception_date: date
    mentions: list[str]


class RequestReceived(ConsumedEvent):
    event_type: ClassVar[str] = "intake.request.received.v1"

    request_id: uuid.UUID
    tracking_code: str
    procedure_title: str
    channel: str
    received_at: AwareDatetime
    applicant: Applicant
    contact_preference: str
    acknowledgement: AcknowledgementView | None = None


class RequestAssigned(ConsumedEvent):
    event_type: ClassVar[str] = "routing.request.assigned.v1"

    request_id: uuid.UUID
    tracking_code: str
    service_name: str
    assigned_at: AwareDatetime


PUBLISHED: tuple[type[EventData], ...] = ()
