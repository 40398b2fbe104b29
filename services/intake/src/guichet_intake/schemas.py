"""Intake's API models: English fields, French descriptions."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StrictBool,
    UrlConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from guichet_plumbing import identifiers as identification
from guichet_plumbing.auth import Role
from guichet_plumbing.identifiers import EmailAddress
from guichet_plumbing.text import Day, Instant, Text, field_error

TENANT_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
CODE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
TRACKING_CODE_PATTERN = r"^[0-9A-Za-z -]{16,24}$"
# One instant is two dates a day apart in two collectivités' time zones (Paris and
# Martinique, Réunion and Guadeloupe): the first administration's day of reception may be
# the day after ours.
ZONES_SPREAD = timedelta(days=1)
# A number begins and ends with a digit, with the spaces, dots and dashes people type
# between digits; spaces around it are allowed, and trimmed once it has matched.
Phone = Annotated[
    str, Field(pattern=r"^ *\+?[0-9][0-9 .-]{4,18}[0-9] *$"), AfterValidator(str.strip)
]


class Channel(StrEnum):
    web = "web"
    email = "email"
    phone = "phone"
    counter = "counter"
    mail = "mail"
    sms = "sms"

    @property
    def electronic(self) -> bool:
        """Channels that are a saisine par voie électronique (R2: they get an AE or AR at once)."""
        return self in {Channel.web, Channel.email, Channel.sms}


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


class Identification(StrEnum):
    """What the applicant must give to be identified (R7)."""

    none = "none"
    person = "person"
    company = "company"
    association = "association"
    any = "any"


class ApplicantKind(StrEnum):
    person = "person"
    company = "company"
    association = "association"


class RequestStatus(StrEnum):
    received = "received"
    assigned = "assigned"
    incomplete = "incomplete"
    transferred = "transferred"
    processing = "processing"
    closed = "closed"
    implicitly_accepted = "implicitly_accepted"
    implicitly_rejected = "implicitly_rejected"


class ReceiptKind(StrEnum):
    accuse_reception = "accuse_reception"
    accuse_enregistrement = "accuse_enregistrement"
    attestation_acceptation_implicite = "attestation_acceptation_implicite"
    demande_pieces = "demande_pieces"
    avis_transmission = "avis_transmission"


class Strict(BaseModel):
    """A request body: unknown fields refused; free text is `Text`, codes checked as sent."""

    model_config = ConfigDict(extra="forbid")


_FRENCH_POSTAL_CODE = re.compile(r"[0-9]{5}")
_POSTAL_CODE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 -]*[A-Za-z0-9])?")


class PostalAddress(Strict):
    street: Annotated[str, Text(1, 200)] = Field(description="Numéro et voie.")
    complement: Annotated[str, Text(max_length=200)] | None = Field(
        default=None, description="Complément (bâtiment, étage…)."
    )
    postal_code: Annotated[str, Text(1, 10)] = Field(
        description="Code postal : 5 chiffres en France, celui du pays à l'étranger."
    )
    city: Annotated[str, Text(1, 100)] = Field(description="Commune.")
    country: Annotated[str, Text(max_length=100)] = Field(default="France", description="Pays.")

    @property
    def in_france(self) -> bool:
        return self.country.strip().casefold() == "france"

    @model_validator(mode="after")
    def postal_code_of_its_country(self) -> Self:
        # Citizens living abroad use the same services (L112-11): their own country's code.
        if self.in_france and not _FRENCH_POSTAL_CODE.fullmatch(self.postal_code):
            raise field_error("postal_code", "Un code postal français comporte 5 chiffres.")
        if not self.in_france and not _POSTAL_CODE.fullmatch(self.postal_code):
            raise field_error(
                "postal_code",
                "Un code postal s'écrit avec des lettres, des chiffres, des espaces ou des tirets.",
            )
        return self

    def one_line(self) -> str:
        parts = [self.street, self.complement, f"{self.postal_code} {self.city}"]
        if not self.in_france:
            parts.append(self.country)
        return ", ".join(p for p in parts if p)


class Applicant(Strict):
    kind: ApplicantKind = Field(
        default=ApplicantKind.person,
        description="person : particulier ; company : entreprise ; association.",
    )
    name: Annotated[str, Text(1, 200)] = Field(
        description="Nom affiché : prénom et nom, ou raison sociale."
    )
    family_name: Annotated[str, Text(max_length=100)] | None = Field(
        default=None, description="Nom de famille."
    )
    given_name: Annotated[str, Text(max_length=100)] | None = Field(
        default=None, description="Prénom(s)."
    )
    email: EmailAddress | None = Field(default=None, description="Adresse électronique.")
    phone: Phone | None = Field(default=None, description="Numéro de téléphone.")
    postal_address: PostalAddress | None = Field(default=None, description="Adresse postale.")
    siren: Annotated[str, Text(max_length=20)] | None = Field(
        default=None, description="SIREN (9 chiffres)."
    )
    siret: Annotated[str, Text(max_length=20)] | None = Field(
        default=None, description="SIRET (14 chiffres)."
    )
    rna: Annotated[str, Text(max_length=20)] | None = Field(
        default=None, description="Numéro RNA de l'association (W…)."
    )

    @field_validator("family_name", "given_name")
    @classmethod
    def _blank_is_absent(cls, value: str | None) -> str | None:
        # A blank name is no name (R7 then asks for it where the procedure needs it); some
        # people have no given name, and FranceConnect then sends an empty one.
        return value or None

    @field_validator("siren")
    @classmethod
    def _siren(cls, value: str | None) -> str | None:
        return _checked(value, identification.siren_error)

    @field_validator("siret")
    @classmethod
    def _siret(cls, value: str | None, info: ValidationInfo) -> str | None:
        siret = _checked(value, identification.siret_error)
        siren = info.data.get("siren")
        if siret and siren and not siret.startswith(siren):
            raise ValueError(
                f"Ce SIRET n'est pas celui d'un établissement de l'entreprise {siren} : "
                "ses neuf premiers chiffres sont le SIREN."
            )
        return siret

    @field_validator("rna")
    @classmethod
    def _rna(cls, value: str | None) -> str | None:
        checked = _checked(value, identification.rna_error)
        return checked.upper() if checked else None


def _checked(value: str | None, error: Any) -> str | None:
    if value is None:
        return None
    problem = error(value)
    if problem:
        raise ValueError(problem)
    return identification.normalise(value)


class Location(Strict):
    # strict: JSON false or "45" is not a coordinate.
    latitude: float = Field(ge=-90, le=90, strict=True, description="Latitude WGS 84.")
    longitude: float = Field(ge=-180, le=180, strict=True, description="Longitude WGS 84.")
    address: Annotated[str, Text(max_length=300, lines=True)] | None = Field(
        default=None, description="Adresse ou repère lisible."
    )


class RequestCreate(Strict):
    tenant: str = Field(
        pattern=TENANT_PATTERN, description="Code de la collectivité.", examples=["admiville"]
    )
    procedure: str | None = Field(
        default=None,
        pattern=CODE_PATTERN,
        description="Code de la démarche. Absent (courriel libre, courrier) : la demande "
        "reçoit un accusé d'enregistrement, puis un accusé de réception une fois qualifiée.",
        examples=["reservation-salle"],
    )
    channel: Channel = Field(description="Canal par lequel la demande est arrivée.")
    applicant: Applicant
    contact_preference: ContactPreference = Field(
        default=ContactPreference.email,
        description="Canal de réponse souhaité par l'usager.",
        validate_default=True,  # the default must be reachable too
    )
    payload: dict[str, Any] = Field(
        default_factory=dict, description="Contenu libre de la demande (formulaire)."
    )
    location: Location | None = Field(default=None, description="Lieu concerné (signalements).")
    entered_by: Annotated[str, Text(max_length=200)] | None = Field(
        default=None,
        description="Agent qui saisit la demande pour le compte de l'usager (guichet, "
        "téléphone, courrier).",
    )
    received_on: Day | None = Field(
        default=None,
        description="Saisie pour le compte (R22) : jour où le courrier est arrivé, où "
        "l'usager est venu ou a appelé, si la saisie est faite plus tard ; jour où un courriel "
        "ou un SMS est arrivé, s'il est enregistré plus tard (relève de la messagerie). Par "
        "défaut, le jour de la saisie. Une demande déposée en ligne (web) est datée par le "
        "serveur. Indiqué par l'accueil de la collectivité ou ses systèmes seulement.",
    )
    arrived_at: Instant | None = Field(
        default=None,
        description="Courriel ou SMS enregistré après son arrivée (relève de la messagerie) : "
        "instant où la messagerie de la collectivité l'a reçu. Il donne le jour de réception ; "
        "un envoi enregistré plus de quelques minutes après son arrivée n'est pas jugé sur le "
        "rythme de la relève (envois abusifs). Indiqué par les systèmes de la collectivité "
        "seulement.",
    )
    first_received_on: Day | None = Field(
        default=None,
        description="Demande transmise par l'administration d'abord saisie (R12) : jour où "
        "elle l'a reçue. Le silence vaut rejet court depuis ce jour, le silence vaut "
        "acceptation depuis la réception ici (R13).",
    )

    @field_validator("applicant")
    @classmethod
    def sent_from_an_address(cls, applicant: Applicant, info: ValidationInfo) -> Applicant:
        # R6: the receipts of an e-mail go back to the address it came from.
        if info.data.get("channel") is Channel.email and applicant.email is None:
            raise field_error(
                "email",
                "Une demande reçue par courrier électronique porte l'adresse d'où elle a été "
                "envoyée : c'est là que l'accusé de réception est adressé.",
            )
        return applicant

    @field_validator("received_on")
    @classmethod
    def dated_by_the_server_online(
        cls, received_on: date | None, info: ValidationInfo
    ) -> date | None:
        # A courriel or an SMS may reach the guichet after it reached the administration
        # (a mailbox read late): its day of arrival is declared, as a letter's is (R23).
        if received_on is not None and info.data.get("channel") is Channel.web:
            raise ValueError(
                "Une demande déposée en ligne est datée à sa réception par le serveur : "
                "cette date ne se déclare que pour un courrier, un appel, un passage au "
                "guichet, ou un courriel ou un SMS enregistré après son arrivée."
            )
        return received_on

    @field_validator("arrived_at")
    @classmethod
    def arrived_by_mail_or_sms(
        cls, arrived_at: datetime | None, info: ValidationInfo
    ) -> datetime | None:
        # Only a mailbox is read after the fact; a letter's or a visit's day is enough.
        if arrived_at is not None and info.data.get("channel") not in (Channel.email, Channel.sms):
            raise ValueError(
                "L'instant d'arrivée ne se déclare que pour un courriel ou un SMS enregistré "
                "après son arrivée ; pour un courrier, un appel ou un passage au guichet, "
                "indiquez le jour (received_on)."
            )
        return arrived_at

    @field_validator("first_received_on")
    @classmethod
    def first_received_before(cls, first: date | None, info: ValidationInfo) -> date | None:
        received_on = info.data.get("received_on")
        if first is not None and received_on is not None and first > received_on + ZONES_SPREAD:
            raise ValueError(
                "L'administration d'abord saisie a reçu la demande avant qu'elle n'arrive "
                "ici (received_on), ou au plus tard le même jour dans son fuseau horaire."
            )
        return first

    @field_validator("contact_preference")
    @classmethod
    def reachable_by_preference(
        cls, preference: ContactPreference, info: ValidationInfo
    ) -> ContactPreference:
        # A field's check, not the model's, so that the answer names the field.
        applicant = info.data.get("applicant")
        if applicant is None:
            return preference  # the applicant's own errors are answered
        needed = {
            ContactPreference.email: (
                applicant.email,
                "par courrier électronique",
                "une adresse électronique",
            ),
            ContactPreference.sms: (applicant.phone, "par SMS", "un numéro de téléphone"),
            ContactPreference.letter: (
                applicant.postal_address,
                "par courrier postal",
                "une adresse postale",
            ),
        }
        value, how, what = needed[preference]
        if value is None:
            raise ValueError(f"Pour recevoir la réponse {how}, indiquez {what} du demandeur.")
        return preference


class ServiceContact(BaseModel):
    code: str
    designation: str = Field(description="Désignation du service chargé du dossier.")
    postal_address: str
    email: str | None
    phone: str | None


class ServiceWrite(Strict):
    """The service in charge of files: what the AR must name (R5), the e-mail if any."""

    designation: Annotated[str, Text(3, 200)]
    postal_address: Annotated[str, Text(5, 400, lines=True)]
    email: EmailAddress | None = None
    phone: Phone = Field(description="Téléphone du service, mention obligatoire de l'AR.")


class DelayWrite(Strict):
    value: int = Field(default=2, ge=1, le=120, strict=True, description="Durée du délai.")
    unit: DelayUnit = DelayUnit.months


class ProcedureWrite(Strict):
    """A catalogue entry, as an administrator of the collectivité writes it."""

    title: Annotated[str, Text(3, 200)] = Field(description="Intitulé de la démarche.")
    kind: ProcedureKind = ProcedureKind.demande
    service: str = Field(pattern=CODE_PATTERN, description="Code du service compétent.")
    regime: Regime = Field(
        default=Regime.sva,
        description="Silence vaut acceptation (sva, par défaut), rejet "
        "(svr) ou pas de décision implicite (none).",
    )
    delay: DelayWrite = Field(default_factory=DelayWrite, description="Deux mois par défaut.")
    extend_to_working_day: StrictBool = Field(
        default=False,
        description="Reporter au jour ouvrable suivant une échéance tombant un dimanche "
        "ou un jour férié.",
    )
    acknowledgement_required: StrictBool = Field(
        default=True,
        description="Faux pour la simple délivrance d'un document prévu par un texte (R1).",
    )
    location_required: StrictBool = False
    identification: Identification = Field(
        default=Identification.none, description="Identification exigée du demandeur (R7)."
    )
    required_pieces: list[Annotated[str, Text(2, 300)]] = Field(default_factory=list, max_length=50)
    required_information: list[Annotated[str, Text(2, 300)]] = Field(
        default_factory=list, max_length=50
    )
    appeal_text: Annotated[str, Text(max_length=2000, lines=True)] | None = Field(
        default=None, description="Délais et voies de recours."
    )
    teleservice_url: Annotated[HttpUrl, UrlConstraints(max_length=500)] | None = Field(
        default=None,
        description="Téléservice dédié : la saisine électronique ne se fait que par lui (R8).",
    )

    @model_validator(mode="after")
    def consistent(self) -> Self:
        if self.regime is not Regime.none and self.kind is not ProcedureKind.demande:
            raise field_error(
                "regime", "Seule une demande peut donner lieu à une décision implicite."
            )
        if self.regime is Regime.svr and not self.appeal_text:
            raise field_error(
                "appeal_text",
                "Une démarche en silence vaut rejet doit indiquer les délais et voies de "
                "recours (appeal_text) : ils figurent sur l'accusé de réception.",
            )
        return self


class ImplicitDecision(BaseModel):
    regime: Regime = Field(
        description="sva : silence vaut acceptation ; svr : silence vaut rejet ; none : pas de "
        "décision implicite."
    )
    delay: str | None = Field(description="Délai au terme duquel le silence vaut décision.")
    state: str = Field(
        description="running : le délai court ; suspended : suspendu (pièces demandées, "
        "SVR) ; waiting_pieces : ne court pas encore (pièces demandées, SVA) ; "
        "transfer_pending : la demande est en cours de transmission à l'administration "
        "compétente (SVA) : reçue par elle, c'est son délai qui court, à compter de cette "
        "réception ; si la transmission reste sans suite, ou si notre administration répond, "
        "la date indiquée vaut ; none."
    )
    decision_date: date | None = Field(
        description="Jour à la fin duquel (minuit, heure locale) la demande sera réputée "
        "acceptée ou rejetée, si le dossier est complet."
    )
    decided: str | None = Field(
        default=None, description="accepted / rejected une fois la décision implicite née."
    )


class ReceiptSummary(BaseModel):
    id: uuid.UUID
    kind: ReceiptKind
    issued_at: AwareDatetime
    mentions: list[str]
    token: str = Field(description="Jeton JWS signé par la collectivité (preuve de date).")


class Acknowledgement(BaseModel):
    kind: ReceiptKind = Field(description="accuse_reception (AR) ou accuse_enregistrement (AE).")
    receipt_id: uuid.UUID
    issued_at: AwareDatetime
    reception_date: date = Field(
        description="Date légale de réception, dans le fuseau de la collectivité."
    )
    tracking_code: str
    service: ServiceContact | None
    implicit_decision: ImplicitDecision | None
    mentions: list[str] = Field(description="Mentions légales, en français.")
    token: str = Field(description="Jeton JWS signé : vérifiable sur /v1/receipts/verify.")


class HistoryEntry(BaseModel):
    at: AwareDatetime
    status: str
    label: str


class PiecesRequestPublic(BaseModel):
    id: uuid.UUID
    pieces: list[str]
    requested_on: date
    due_on: date
    received_on: date | None


class RequestPublic(BaseModel):
    id: uuid.UUID
    tracking_code: str
    tenant: str
    procedure: str | None
    channel: Channel
    status: RequestStatus
    status_label: str
    received_at: AwareDatetime
    reception_date: date
    arrived_at: AwareDatetime | None = Field(
        description="Courriel ou SMS enregistré après son arrivée : instant où la messagerie "
        "de la collectivité l'a reçu."
    )
    assigned_service: str | None
    acknowledgement: Acknowledgement | None = Field(
        description="L'accusé de réception en vigueur : le dernier AR remis (il est "
        "renouvelé quand le dossier est complété), ou l'AE en attente de qualification."
    )
    implicit_decision: ImplicitDecision | None
    receipts: list[ReceiptSummary]
    missing_pieces: list[PiecesRequestPublic]
    history: list[HistoryEntry]


class RequestCreated(RequestPublic):
    """The request as stored, with the acknowledgement to hand to the applicant."""

    follow_url: str = Field(
        description="Lien de suivi signé, à durée limitée : suivre la demande sans compte "
        "(sinon : numéro de suivi et adresse électronique ou téléphone donnés au dépôt)."
    )


class ProcedurePublic(BaseModel):
    code: str
    title: str
    kind: ProcedureKind
    regime: Regime
    delay: str | None = Field(
        description="Délai au terme duquel le silence vaut décision ; absent quand le "
        "silence ne vaut pas décision (regime none)."
    )
    extend_to_working_day: bool
    acknowledgement_required: bool
    location_required: bool
    identification: Identification
    required_pieces: list[str]
    required_information: list[str]
    appeal_text: str | None
    teleservice_url: str | None
    service: ServiceContact


class ProcedureList(BaseModel):
    tenant: str
    items: list[ProcedurePublic]


class SvaEntry(BaseModel):
    code: str
    title: str
    authority: str = Field(description="Autorité compétente pour décider.")
    delay: str = Field(description="Délai au terme duquel le silence vaut acceptation.")


class SvaList(BaseModel):
    """R10: the published list of procedures where silence means acceptance."""

    tenant: str
    tenant_name: str
    items: list[SvaEntry]


class Qualification(Strict):
    procedure: str = Field(pattern=CODE_PATTERN, description="Démarche retenue.")


class MissingPiecesCreate(Strict):
    pieces: list[Annotated[str, Text(2, 300)]] = Field(
        min_length=1, max_length=30, description="Pièces ou informations manquantes."
    )
    due_on: Day = Field(description="Date limite pour les produire (incluse).")
    requested_by: Annotated[str, Text(max_length=200)] | None = None


class PiecesReceived(Strict):
    received_on: Day | None = Field(
        default=None,
        description="Date à laquelle toutes les pièces demandées étaient reçues (le dossier "
        "complet), au plus tôt celle de la dernière demande de pièces ; aujourd'hui par défaut.",
    )


class TransferCreate(Strict):
    tenant: str | None = Field(
        default=None, pattern=TENANT_PATTERN, description="Collectivité servie par ce guichet."
    )
    administration_name: Annotated[str, Text(3, 200)] | None = None
    administration_url: HttpUrl | None = Field(
        default=None, description="Point de réception des transmissions (HTTPS, signé)."
    )
    by_post: StrictBool = Field(
        default=False,
        description="Envoyée par courrier par l'agent (administration sans point de "
        "réception, ou qui l'a refusée) : la transmission est enregistrée et l'usager avisé.",
    )
    reason: Annotated[str, Text(3, 500, lines=True)] = Field(description="Motif, lu par l'usager.")

    @model_validator(mode="after")
    def one_destination(self) -> Self:
        external = self.administration_name is not None or self.administration_url is not None
        if (self.tenant is None) == (not external):
            raise field_error(
                "tenant",
                "Indiquez soit une collectivité (tenant), soit une administration extérieure "
                "(administration_name et administration_url).",
            )
        if external and self.administration_name is None:
            raise field_error("administration_name", "Une administration extérieure a un nom.")
        if external and self.by_post == (self.administration_url is not None):
            raise field_error(
                "administration_url",
                "Une administration extérieure reçoit la demande soit à son adresse de "
                "réception (administration_url), soit par courrier (by_post), pas les deux.",
            )
        if self.by_post and self.tenant is not None:
            raise field_error(
                "by_post", "Une collectivité de ce guichet la reçoit ici, pas par courrier."
            )
        return self


class TransferDocument(BaseModel):
    """A hand-over another guichet signed (R12): who sends it, for which address, and the
    request as first received. The request's own fields are checked as a submission's
    (`RequestCreate`); a field a later sender adds at this level is ignored."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["guichet.transfer.v1"]
    tenant: str = Field(pattern=TENANT_PATTERN, description="Collectivité qui l'envoie.")
    to: HttpUrl = Field(description="Adresse de réception pour laquelle elle est signée.")
    tracking_code: str = Field(pattern=TRACKING_CODE_PATTERN)
    first_received_on: Day = Field(description="Réception par l'administration saisie (R13).")
    channel: Any
    applicant: Any
    contact_preference: Any = None
    payload: Any = None
    location: Any = None


class TransferReceived(BaseModel):
    tracking_code: str = Field(description="Numéro de la demande ici.")
    reception_date: date = Field(
        description="Réception par l'administration compétente : le délai de la SVA en part "
        "(R13), celui de la SVR part de first_received_on."
    )
    first_received_on: date


# Above the longest receipt the catalogue allows (`test_r2_the_longest_receipt_verifies`).
RECEIPT_TOKEN_MAX_LENGTH = 200_000


class VerifyRequest(Strict):
    token: str = Field(
        min_length=10,
        max_length=RECEIPT_TOKEN_MAX_LENGTH,
        description="Jeton JWS d'un accusé, tel qu'imprimé : les retours à la ligne sont ignorés.",
    )


class VerifyResult(BaseModel):
    authentic: bool
    document: str | None = Field(
        default=None,
        description="Document authentifié : le type de reçu (accuse_reception, "
        "accuse_enregistrement, demande_pieces, ...), ou transmission pour la transmission "
        "d'une demande à une autre administration (R12).",
    )
    receipt: dict[str, Any] | None = Field(description="Contenu signé, si authentique.")
    void: str | None = Field(
        default=None,
        description="Pourquoi un document authentique ne vaut plus : l'attestation d'une "
        "acceptation implicite qui n'est pas née (réponse donnée à temps, connue après).",
    )


class OverdueReceipt(BaseModel):
    tracking_code: str
    received_at: AwareDatetime
    reception_date: date
    receipt_due_on: date | None = Field(description="Date limite de l'accusé de réception (R4).")
    registration_due_on: date | None = Field(
        description="Date limite de l'accusé d'enregistrement (R3), quand il n'a pu être immédiat."
    )
    channel: Channel


class OverdueList(BaseModel):
    tenant: str
    count: int
    items: list[OverdueReceipt]


class SourcePublic(BaseModel):
    source: str
    flagged_requests: int
    noticed_at: AwareDatetime | None
    blocked_at: AwareDatetime | None
    reason: str | None


class SourceList(BaseModel):
    tenant: str
    items: list[SourcePublic]


class SourceAction(Strict):
    reason: Annotated[str, Text(3, 300, lines=True)] = Field(
        description="Motif, communiqué à la source."
    )


def format_delay(value: int, unit: DelayUnit | str) -> str:
    words = {
        DelayUnit.days: ("jour", "jours"),
        DelayUnit.weeks: ("semaine", "semaines"),
        DelayUnit.months: ("mois", "mois"),
    }[DelayUnit(unit)]
    return f"{value} {words[0] if value == 1 else words[1]}"


# -- identity and access ------------------------------------------------------------------------

Scope = Literal["transfers:write", "open311:write"]


class TokenAnswer(BaseModel):
    """An OAuth 2 bearer token (RFC 6749, section 5.1)."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int = Field(description="Durée de validité, en secondes.")
    scope: str | None = None
    id_token_hint: str | None = Field(
        default=None,
        description="FranceConnect : à rendre à la déconnexion (fin de session chez "
        "FranceConnect).",
    )


class AgentAccountWrite(Strict):
    name: Annotated[str, Text(1, 200)] = Field(description="Nom affiché de l'agent.")
    roles: list[Role] = Field(min_length=1, max_length=6, description="Rôles dans la collectivité.")
    services: list[Annotated[str, Field(pattern=CODE_PATTERN)]] = Field(
        default_factory=list,
        max_length=50,
        description="Services dont l'agent ouvre les dossiers (instructeur, chef de service).",
    )


class ClientCreate(Strict):
    name: Annotated[str, Text(3, 200)] = Field(description="Administration ou système.")
    scopes: list[Scope] = Field(min_length=1, max_length=2, description="Droits accordés.")


class ClientCredentials(BaseModel):
    """Shown once: only a hash of the secret is kept."""

    client_id: str
    client_secret: str
    tenant: str
    scopes: list[str]
    previous_secret_valid_until: AwareDatetime | None = Field(
        default=None, description="Après un renouvellement : fin de validité de l'ancien secret."
    )


class PivotIdentity(BaseModel):
    """R14: the identity FranceConnect vouches for."""

    family_name: str | None = None
    given_name: str | None = None
    gender: str | None = None
    birthdate: str | None = None
    birthplace: str | None = Field(default=None, description="Code INSEE de la commune.")
    birthcountry: str | None = Field(default=None, description="Code INSEE du pays.")
    email: str | None = None


class Me(BaseModel):
    identity: PivotIdentity
    applicant: Applicant = Field(
        description="Demandeur prérempli depuis l'identité pivot, à reprendre dans la demande."
    )


class RepresentativeIdentity(Strict):
    """The legal representative as the court decision names them (checked by FranceConnect)."""

    family_name: Annotated[str, Text(1, 100)]
    given_name: Annotated[str, Text(1, 100)]
    birthdate: Day


class MandateCreate(Strict):
    tenant: str = Field(pattern=TENANT_PATTERN, description="Collectivité.")
    kind: Literal["aidant", "representant_legal"] = Field(
        description="aidant : France Services, travailleur social ; representant_legal : "
        "tuteur ou curateur d'un majeur protégé."
    )
    agent: Annotated[str, Text(1, 200)] | None = Field(
        default=None, description="aidant : identifiant de l'agent."
    )
    representative: RepresentativeIdentity | None = None
    expires_on: Day | None = Field(default=None, description="Fin du mandat (incluse).")

    @model_validator(mode="after")
    def one_holder(self) -> Self:
        if self.kind == "aidant" and (self.agent is None or self.representative is not None):
            raise field_error("agent", "Un mandat d'aidant désigne un agent (agent), et lui seul.")
        if self.kind == "representant_legal" and (
            self.representative is None or self.agent is not None
        ):
            raise field_error(
                "representative",
                "Un mandat de représentant légal désigne une personne (representative), et "
                "elle seule.",
            )
        return self


class MandatePublic(BaseModel):
    id: uuid.UUID
    tenant: str
    kind: str
    holder: str = Field(description="Qui agit pour l'usager.")
    grantor: str = Field(description="L'usager qui a donné mandat.")
    granted_at: AwareDatetime
    expires_on: date | None
    revoked: bool
