"""Notifications' own view of the events it consumes (it publishes none yet)."""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import AwareDatetime, BaseModel

from guichet_plumbing.envelope import ConsumedEvent, EventData


class Applicant(BaseModel):
    name: str
    email: str | None = None
    phone: str | None = None
    postal_address: str | None = None


class RequestReceived(ConsumedEvent):
    event_type: ClassVar[str] = "intake.request.received.v1"

    request_id: uuid.UUID
    tracking_code: str
    channel: str
    applicant: Applicant
    contact_preference: str


class ReceiptIssued(ConsumedEvent):
    event_type: ClassVar[str] = "intake.receipt.issued.v1"

    request_id: uuid.UUID
    receipt_id: uuid.UUID
    tracking_code: str
    kind: str
    title: str
    mentions: list[str]
    document_url: str


class RequestAssigned(ConsumedEvent):
    event_type: ClassVar[str] = "routing.request.assigned.v1"

    request_id: uuid.UUID
    tracking_code: str
    service_code: str
    service_name: str
    assigned_at: AwareDatetime


class StatusChanged(ConsumedEvent):
    event_type: ClassVar[str] = "routing.request.status_changed.v1"

    request_id: uuid.UUID
    tracking_code: str
    label: str
    actions: list[str]
    final: bool = False
    incident_id: uuid.UUID | None = None  # R30: closes an incident several people reported
    reporters: int | None = None


class ServiceAlerted(ConsumedEvent):
    event_type: ClassVar[str] = "routing.service.alerted.v1"

    request_id: uuid.UUID
    tracking_code: str
    service_name: str
    service_email: str
    procedure_title: str
    channel: str
    due_at: AwareDatetime | None = None


class DigestItem(BaseModel):
    tracking_code: str
    procedure_title: str
    channel: str
    status_label: str
    received_at: AwareDatetime
    due_at: AwareDatetime | None = None


class ServiceDigest(ConsumedEvent):
    event_type: ClassVar[str] = "routing.service.digest.v1"

    service_name: str
    service_email: str
    timezone: str
    period_start: AwareDatetime
    period_end: AwareDatetime
    new_total: int
    overdue_total: int
    new: list[DigestItem]
    overdue: list[DigestItem]


class SourceNoticed(ConsumedEvent):
    event_type: ClassVar[str] = "intake.source.noticed.v1"

    request_id: uuid.UUID
    tracking_code: str
    email: str | None
    postal_address: str | None
    title: str
    notice: list[str]


PUBLISHED: tuple[type[EventData], ...] = ()
