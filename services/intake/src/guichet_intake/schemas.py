"""Intake's API models: English fields, French descriptions."""

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum
from typing import Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, model_validator

TENANT_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
CODE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"


class Channel(StrEnum):
    web = "web"
    email = "email"
    phone = "phone"
    counter = "counter"
    mail = "mail"
    sms = "sms"


class ContactPreference(StrEnum):
    email = "email"
    sms = "sms"
    letter = "letter"


class Regime(StrEnum):
    sva = "sva"
    svr = "svr"
    none = "none"


class DelayUnit(StrEnum):
    days = "days"
    weeks = "weeks"
    months = "months"


class ProcedureKind(StrEnum):
    demande = "demande"
    signalement = "signalement"
    information = "information"


class RequestStatus(StrEnum):
    received = "received"
    assigned = "assigned"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PostalAddress(Strict):
    street: str = Field(min_length=1, max_length=200, description="Numéro et voie.")
    complement: str | None = Field(
        default=None, max_length=200, description="Complément (bâtiment, étage…)."
    )
    postal_code: str = Field(pattern=r"^[0-9]{5}$", description="Code postal (5 chiffres).")
    city: str = Field(min_length=1, max_length=100, description="Commune.")
    country: str = Field(default="France", max_length=100, description="Pays.")

    def one_line(self) -> str:
        parts = [self.street, self.complement, f"{self.postal_code} {self.city}"]
        if self.country != "France":
            parts.append(self.country)
        return ", ".join(p for p in parts if p)


class Applicant(Strict):
    name: str = Field(min_length=1, max_length=200, description="Nom et prénom du demandeur.")
    email: EmailStr | None = Field(default=None, description="Adresse électronique.")
    phone: str | None = Field(
        default=None, pattern=r"^\+?[0-9 .-]{6,20}$", description="Numéro de téléphone."
    )
    postal_address: PostalAddress | None = Field(default=None, description="Adresse postale.")


class Location(Strict):
    # strict: JSON false or "45" is not a coordinate.
    latitude: float = Field(ge=-90, le=90, strict=True, description="Latitude WGS 84.")
    longitude: float = Field(ge=-180, le=180, strict=True, description="Longitude WGS 84.")
    address: str | None = Field(
        default=None, max_length=300, description="Adresse ou repère lisible."
    )


class RequestCreate(Strict):
    tenant: str = Field(
        pattern=TENANT_PATTERN, description="Code de la collectivité.", examples=["admiville"]
    )
    procedure: str = Field(
        pattern=CODE_PATTERN, description="Code de la démarche.", examples=["reservation-salle"]
    )
    channel: Channel = Field(description="Canal par lequel la demande est arrivée.")
    applicant: Applicant
    contact_preference: ContactPreference = Field(
        default=ContactPreference.email, description="Canal de réponse souhaité par l'usager."
    )
    payload: dict[str, Any] = Field(
        default_factory=dict, description="Contenu libre de la demande (formulaire)."
    )
    location: Location | None = Field(default=None, description="Lieu concerné (signalements).")

    @model_validator(mode="after")
    def reachable_by_preference(self) -> Self:
        needed = {
            ContactPreference.email: (
                self.applicant.email,
                "applicant.email",
                "une adresse électronique",
            ),
            ContactPreference.sms: (
                self.applicant.phone,
                "applicant.phone",
                "un numéro de téléphone",
            ),
            ContactPreference.letter: (
                self.applicant.postal_address,
                "applicant.postal_address",
                "une adresse postale",
            ),
        }
        value, _field, what = needed[self.contact_preference]
        if value is None:
            raise ValueError(
                f"Pour être répondu par « {self.contact_preference.value} », "
                f"indiquez {what} du demandeur."
            )
        return self


class ServiceContact(BaseModel):
    code: str
    designation: str = Field(description="Désignation du service chargé du dossier.")
    postal_address: str
    email: str | None
    phone: str | None


class ImplicitDecision(BaseModel):
    regime: Regime = Field(
        description="sva : silence vaut acceptation ; svr : silence vaut "
        "rejet ; none : pas de décision implicite."
    )
    delay: str | None = Field(description="Délai au terme duquel le silence vaut décision.")
    decision_date: date | None = Field(
        description="Jour à la fin duquel (minuit, heure locale) la "
        "demande sera réputée acceptée ou rejetée, si le "
        "dossier est complet."
    )
    statement: str | None = Field(description="Mention à l'usager.")


class Acknowledgement(BaseModel):
    kind: str = Field(description="accuse_reception (AR) ou accuse_enregistrement (AE).")
    issued_at: AwareDatetime
    reception_date: date = Field(
        description="Date légale de réception, dans le fuseau de la collectivité."
    )
    tracking_code: str
    service: ServiceContact
    implicit_decision: ImplicitDecision | None
    mentions: list[str] = Field(description="Mentions légales, en français.")


class HistoryEntry(BaseModel):
    at: AwareDatetime
    status: str
    label: str


class RequestPublic(BaseModel):
    id: uuid.UUID
    tracking_code: str
    tenant: str
    procedure: str
    channel: Channel
    status: RequestStatus
    status_label: str
    received_at: AwareDatetime
    reception_date: date
    assigned_service: str | None
    acknowledgement: Acknowledgement | None
    history: list[HistoryEntry]


class ProcedurePublic(BaseModel):
    code: str
    title: str
    kind: ProcedureKind
    regime: Regime
    delay: str
    acknowledgement_required: bool
    location_required: bool
    service: ServiceContact


class ProcedureList(BaseModel):
    tenant: str
    items: list[ProcedurePublic]


class RequestCreated(RequestPublic):
    """The request as stored, with the acknowledgement to hand to the applicant."""


def format_delay(value: int, unit: DelayUnit) -> str:
    words = {
        DelayUnit.days: ("jour", "jours"),
        DelayUnit.weeks: ("semaine", "semaines"),
        DelayUnit.months: ("mois", "mois"),
    }[unit]
    return f"{value} {words[0] if value == 1 else words[1]}"
