"""Notifications' API models."""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, Field


class DeliveryStatus(StrEnum):
    waiting_contact = "waiting_contact"
    pending = "pending"
    sent = "sent"
    to_print = "to_print"
    failed = "failed"
    unreachable = "unreachable"


class DeliveryPublic(BaseModel):
    id: uuid.UUID
    request_id: uuid.UUID | None = Field(description="Absent pour un relevé périodique.")
    tracking_code: str | None
    kind: str = Field(
        description="accuse_reception, accuse_enregistrement, demande_pieces, "
        "avis_transmission, attestation_acceptation_implicite, assignment (transmission "
        "au service compétent), status (nouvelle étape du traitement), agent_alert (alerte "
        "au service) ou service_digest (relevé périodique du service)."
    )
    channel: str | None = Field(description="email, letter (courrier papier à imprimer).")
    recipient: str | None
    subject: str
    status: DeliveryStatus = Field(
        description="waiting_contact : coordonnées pas encore connues ; pending : à envoyer ; "
        "sent : envoyé ; to_print : courrier à imprimer et poster ; failed : échec "
        "définitif ; unreachable : aucun moyen de joindre l'usager."
    )
    attempts: int
    created_at: AwareDatetime
    sent_at: AwareDatetime | None


class DeliveryList(BaseModel):
    items: list[DeliveryPublic]
