"""Routing's API models."""

from __future__ import annotations

import uuid

from pydantic import AwareDatetime, BaseModel, Field

TENANT_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
CODE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"


class InboxItem(BaseModel):
    request_id: uuid.UUID
    tracking_code: str
    procedure: str | None = Field(description="Absent tant que la demande n'est pas qualifiée.")
    procedure_title: str
    channel: str = Field(description="Canal d'arrivée : web, email, phone, counter, mail, sms.")
    applicant_name: str
    service: str
    status: str
    status_label: str
    received_at: AwareDatetime
    assigned_at: AwareDatetime


class Inbox(BaseModel):
    items: list[InboxItem]
    next_cursor: str | None = Field(
        description="À passer en `cursor` pour la page suivante ; absent à la dernière page."
    )


class ServicePublic(BaseModel):
    code: str
    name: str


class RulePublic(BaseModel):
    position: int
    procedure: str
    service: str


class RoutingTable(BaseModel):
    tenant: str
    default_service: str
    services: list[ServicePublic]
    rules: list[RulePublic]
