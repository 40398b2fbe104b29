"""Events routing publishes, and its own view of those it consumes."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, Field

from guichet_plumbing.envelope import ConsumedEvent, EventData


class RequestAssigned(EventData):
    """A request was routed to the competent service."""

    event_type: ClassVar[str] = "routing.request.assigned.v1"

    request_id: uuid.UUID
    tracking_code: str
    procedure_code: str | None
    channel: str
    service_code: str
    service_name: str
    rule: str
    assigned_at: AwareDatetime
    team_code: str | None = None


class ReceivedApplicant(BaseModel):
    name: str


class ReceivedLocation(BaseModel):
    latitude: float
    longitude: float
    address: str | None = None


class RequestReceived(ConsumedEvent):
    event_type: ClassVar[str] = "intake.request.received.v1"

    request_id: uuid.UUID
    tracking_code: str
    procedure_code: str | None = None  # None: to be qualified, goes to the default service
    procedure_title: str | None = None
    procedure_kind: str | None = None  # signalement: located reports merge into incidents (R30)
    channel: str
    received_at: AwareDatetime
    applicant: ReceivedApplicant
    payload: dict[str, Any] = Field(default_factory=dict)
    location: ReceivedLocation | None = None


class StatusChanged(EventData):
    """An agent (or a timer) moved the request along its workflow; `label` is what the
    citizen reads."""

    event_type: ClassVar[str] = "routing.request.status_changed.v1"

    request_id: uuid.UUID
    tracking_code: str
    from_status: str
    status: str
    label: str
    phase: str
    final: bool
    transition: str
    actions: list[str]
    changed_at: AwareDatetime
    sequence: int = Field(
        description="Rang de ce changement parmi ceux de la demande (1, 2, ...) : les "
        "appliquer dans cet ordre, quel que soit celui où ils arrivent."
    )
    # R30: set when this closes an incident; every reporter is then told, whatever `actions`.
    incident_id: uuid.UUID | None = None
    reporters: int | None = Field(default=None, description="Personnes l'ayant signalé.")


class ServiceAlerted(EventData):
    """A service that asked for immediate alerts has a new request (R28)."""

    event_type: ClassVar[str] = "routing.service.alerted.v1"

    request_id: uuid.UUID
    tracking_code: str
    service_code: str
    service_name: str
    service_email: str
    procedure_title: str
    channel: str
    due_at: AwareDatetime | None


class PiecesRequested(EventData):
    """The workflow asks the citizen for missing pieces; intake issues the legal request (R11)."""

    event_type: ClassVar[str] = "routing.request.pieces_requested.v1"

    request_id: uuid.UUID
    tracking_code: str
    pieces: list[str]
    due_in_days: int
    requested_by: str | None
    requested_at: AwareDatetime


class TransferRequested(EventData):
    """The workflow sends the request on to the competent administration; intake does it
    and tells the citizen (R12)."""

    event_type: ClassVar[str] = "routing.request.transfer_requested.v1"

    request_id: uuid.UUID
    tracking_code: str
    tenant: str | None
    administration_name: str | None
    administration_url: str | None
    reason: str
    requested_at: AwareDatetime


class DigestItem(BaseModel):
    request_id: uuid.UUID
    tracking_code: str
    procedure_title: str
    channel: str
    status_label: str
    received_at: AwareDatetime
    due_at: AwareDatetime | None


class ServiceDigest(EventData):
    """A service that consults its queue periodically gets its new and overdue requests (R28)."""

    event_type: ClassVar[str] = "routing.service.digest.v1"

    service_code: str
    service_name: str
    service_email: str
    timezone: str = Field(description="Fuseau de la collectivité, pour dater le relevé.")
    period_start: AwareDatetime
    period_end: AwareDatetime
    new_total: int
    overdue_total: int
    new: list[DigestItem]
    overdue: list[DigestItem]


class PiecesReceived(ConsumedEvent):
    event_type: ClassVar[str] = "intake.request.pieces_received.v1"

    request_id: uuid.UUID
    received_on: date


class TransferRefused(ConsumedEvent):
    event_type: ClassVar[str] = "intake.request.transfer_refused.v1"

    request_id: uuid.UUID
    destination: str
    detail: str
    refused_at: AwareDatetime


PUBLISHED: tuple[type[EventData], ...] = (
    RequestAssigned,
    StatusChanged,
    ServiceAlerted,
    PiecesRequested,
    TransferRequested,
    ServiceDigest,
)
