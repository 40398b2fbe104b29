"""Events intake publishes, and its own view of those it consumes."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, Field

from guichet_plumbing.envelope import ConsumedEvent, EventData


class ApplicantContact(BaseModel):
    name: str
    email: str | None
    phone: str | None
    postal_address: str | None


class RequestReceived(EventData):
    """A request was received and timestamped, whatever its channel."""

    event_type: ClassVar[str] = "intake.request.received.v1"

    request_id: uuid.UUID
    tracking_code: str
    procedure_code: str | None
    procedure_title: str | None
    # signalement, demande or information: routing merges located reports (R30).
    procedure_kind: str | None = None
    channel: str
    received_at: AwareDatetime
    reception_date: date
    applicant: ApplicantContact
    contact_preference: str
    payload: dict[str, Any]
    location: dict[str, Any] | None
    abusive: bool


class ReceiptIssued(EventData):
    """A signed receipt was issued (AR, AE, request for pieces, transfer notice, attestation);
    it must reach the applicant."""

    event_type: ClassVar[str] = "intake.receipt.issued.v1"

    request_id: uuid.UUID
    receipt_id: uuid.UUID
    tracking_code: str
    kind: str
    title: str
    issued_at: AwareDatetime
    mentions: list[str]
    document_url: str


class ImplicitDecisionBorn(EventData):
    """The delay ran out with no explicit decision: the request is deemed accepted or rejected."""

    event_type: ClassVar[str] = "intake.request.implicit_decision.v1"

    request_id: uuid.UUID
    tracking_code: str
    decision: str  # accepted | rejected
    last_day: date
    born_at: AwareDatetime


class ImplicitDecisionVoid(EventData):
    """An implicit decision announced was never born: the service's act before the deadline
    (its answer, a request for pieces, a transfer) reached intake after the scheduler had
    recorded the decision (R10)."""

    event_type: ClassVar[str] = "intake.request.implicit_decision_void.v1"

    request_id: uuid.UUID
    tracking_code: str
    decision: str  # the decision announced, and void: accepted | rejected
    act: str  # answer | pieces | transfer
    acted_at: AwareDatetime
    voided_at: AwareDatetime


class RequestTransferred(EventData):
    """The request was sent on to the competent administration (R12)."""

    event_type: ClassVar[str] = "intake.request.transferred.v1"

    request_id: uuid.UUID
    tracking_code: str
    destination: str
    destination_tenant: str | None
    new_request_id: uuid.UUID | None
    reason: str


class TransferNotMade(EventData):
    """A transfer a workflow asked for, or one the scheduler was sending, was refused or
    given up (R12): the request stays here, its clock running; its service takes it back."""

    event_type: ClassVar[str] = "intake.request.transfer_refused.v1"

    request_id: uuid.UUID
    tracking_code: str
    destination: str
    detail: str = Field(description="Pourquoi, pour les agents.")
    refused_at: AwareDatetime


class PiecesArrived(EventData):
    """The missing pieces arrived: the file is complete (R11); a workflow may move on."""

    event_type: ClassVar[str] = "intake.request.pieces_received.v1"

    request_id: uuid.UUID
    tracking_code: str
    received_on: date


class RequestAssigned(ConsumedEvent):
    event_type: ClassVar[str] = "routing.request.assigned.v1"

    request_id: uuid.UUID
    service_code: str
    service_name: str
    assigned_at: AwareDatetime


class StatusChanged(ConsumedEvent):
    event_type: ClassVar[str] = "routing.request.status_changed.v1"

    request_id: uuid.UUID
    status: str
    label: str
    final: bool
    changed_at: AwareDatetime
    actions: list[str] = Field(default_factory=list)
    sequence: int = 0  # 0: not given (a routing of before it): applied as it comes


class PiecesRequested(ConsumedEvent):
    event_type: ClassVar[str] = "routing.request.pieces_requested.v1"

    request_id: uuid.UUID
    pieces: list[str]
    due_in_days: int
    requested_by: str | None = None
    requested_at: AwareDatetime


class TransferRequested(ConsumedEvent):
    event_type: ClassVar[str] = "routing.request.transfer_requested.v1"

    request_id: uuid.UUID
    tenant: str | None = None
    administration_name: str | None = None
    administration_url: str | None = None
    reason: str
    requested_at: AwareDatetime


class SourceNoticed(EventData):
    """An agent told a source its sends are abusive and may be blocked (R9): the notice must
    reach it. `request_id` is its latest send, whose contact details address the notice."""

    event_type: ClassVar[str] = "intake.source.noticed.v1"

    source: str
    request_id: uuid.UUID
    tracking_code: str
    name: str
    email: str | None
    postal_address: str | None
    title: str
    notice: list[str]
    noticed_at: AwareDatetime


PUBLISHED: tuple[type[EventData], ...] = (
    RequestReceived,
    ReceiptIssued,
    ImplicitDecisionBorn,
    ImplicitDecisionVoid,
    RequestTransferred,
    TransferNotMade,
    PiecesArrived,
    SourceNoticed,
)
