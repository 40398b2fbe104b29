"""Routing's API models."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    StrictBool,
    field_validator,
    model_validator,
)

from guichet_plumbing.text import Text, field_error

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
    team: str | None = Field(default=None, description="Équipe du service, le cas échéant.")
    status: str
    status_label: str
    phase: str = Field(description="qualification, processing (traitement) ou delivery.")
    agent: str | None = Field(description="Agent à qui la demande est attribuée.")
    neighbourhood: str | None
    received_at: AwareDatetime
    assigned_at: AwareDatetime
    due_at: AwareDatetime | None = Field(description="Échéance de l'engagement du service.")
    overdue: bool
    incident_id: uuid.UUID | None = Field(
        default=None, description="Signalement : l'incident auquel il est rattaché (R30)."
    )
    reporters: int | None = Field(
        default=None, description="Signalement : nombre de personnes ayant signalé l'incident."
    )


class Inbox(BaseModel):
    items: list[InboxItem]
    counts: dict[str, int] = Field(
        description="Nombre de demandes non closes par statut (mêmes filtres, hors statut)."
    )
    next_cursor: str | None = Field(
        description="À passer en `cursor` pour la page suivante ; absent à la dernière page."
    )


class ServicePublic(BaseModel):
    code: str
    name: str


class TeamPublic(BaseModel):
    service: str
    code: str
    name: str


class RulePublic(BaseModel):
    position: int
    name: str
    conditions: dict[str, Any]
    service: str
    team: str | None = None


class RoutingTable(BaseModel):
    tenant: str
    default_service: str
    services: list[ServicePublic]
    teams: list[TeamPublic] = Field(default_factory=list)
    rules: list[RulePublic]
    neighbourhoods: list[str]


Channel = Literal["web", "email", "phone", "counter", "mail", "sms"]
FIELD_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,4}$"


class Strict(BaseModel):
    """A request body: unknown fields refused; free text is `Text`, codes checked as sent."""

    model_config = ConfigDict(extra="forbid")


class FieldConditionWrite(Strict):
    field: str = Field(pattern=FIELD_PATTERN, description="Chemin dans le formulaire (a.b).")
    # Values typed by an administrator: a stray space would make a rule never match.
    equals: Annotated[str, Text()] | int | float | bool | None = Field(
        default=None, description="Valeur exacte."
    )
    one_of: list[Annotated[str, Text()] | int | float | bool] | None = Field(
        default=None, min_length=1, max_length=50, description="Une valeur parmi celles-ci."
    )
    contains: Annotated[str, Text(1, 200)] | None = Field(
        default=None, description="Texte contenu (sans tenir compte de la casse)."
    )

    @model_validator(mode="after")
    def one_test(self) -> Self:
        given = [
            name for name in ("equals", "one_of", "contains") if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise field_error(
                given[1] if given else "equals",
                "Une condition sur un champ a exactement un test : equals, one_of ou contains.",
            )
        return self


class RuleConditions(Strict):
    procedures: list[Annotated[str, Field(pattern=CODE_PATTERN)]] | None = Field(
        default=None, min_length=1, max_length=100, description="Démarches concernées."
    )
    channels: list[Channel] | None = Field(
        default=None, min_length=1, description="Canaux d'arrivée concernés."
    )
    fields: list[FieldConditionWrite] = Field(
        default_factory=list, max_length=20, description="Conditions sur le formulaire."
    )
    neighbourhoods: list[Annotated[str, Field(pattern=CODE_PATTERN)]] | None = Field(
        default=None, min_length=1, max_length=100, description="Quartiers concernés."
    )


class RuleWrite(Strict):
    name: Annotated[str, Text(3, 200)] = Field(description="Nom lisible de la règle.")
    conditions: RuleConditions = Field(default_factory=RuleConditions)
    service: str = Field(pattern=CODE_PATTERN, description="Service compétent.")
    team: str | None = Field(
        default=None, pattern=CODE_PATTERN, description="Équipe de ce service (facultatif)."
    )


class TeamWrite(Strict):
    name: Annotated[str, Text(2, 200)] = Field(description="Nom de l'équipe.")


class RulesWrite(Strict):
    """The whole routing table of a tenant, in order: the first matching rule wins."""

    default_service: str = Field(
        pattern=CODE_PATTERN, description="Service qui reçoit ce qu'aucune règle ne prend."
    )
    rules: list[RuleWrite] = Field(max_length=500)


class NeighbourhoodWrite(Strict):
    name: Annotated[str, Text(2, 200)] = Field(description="Nom du quartier.")
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon ou MultiPolygon (WGS 84).")

    @field_validator("geometry")
    @classmethod
    def geojson(cls, value: dict[str, Any]) -> dict[str, Any]:
        kind = value.get("type")
        coordinates = value.get("coordinates")
        if kind not in {"Polygon", "MultiPolygon"} or not isinstance(coordinates, list):
            raise ValueError("La géométrie doit être un Polygon ou un MultiPolygon GeoJSON.")
        polygons = coordinates if kind == "MultiPolygon" else [coordinates]
        if not polygons or len(polygons) > 50:
            raise ValueError("Entre 1 et 50 polygones.")
        for polygon in polygons:
            if not isinstance(polygon, list) or not polygon:
                raise ValueError("Chaque polygone a au moins un anneau.")
            for ring in polygon:
                _check_ring(ring)
        return {"type": kind, "coordinates": coordinates}


def _check_ring(ring: Any) -> None:
    if not isinstance(ring, list) or not 4 <= len(ring) <= 10000:
        raise ValueError("Chaque anneau compte de 4 à 10 000 positions.")
    for position in ring:
        if (
            not isinstance(position, list)
            or len(position) not in (2, 3)
            or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in position)
        ):
            raise ValueError("Chaque position est [longitude, latitude].")
        if not (-180 <= position[0] <= 180 and -90 <= position[1] <= 90):
            raise ValueError("Longitude entre -180 et 180, latitude entre -90 et 90.")
    if ring[0][:2] != ring[-1][:2]:
        raise ValueError("Un anneau doit être fermé : sa dernière position répète la première.")


class NeighbourhoodPublic(BaseModel):
    code: str
    name: str
    geometry: dict[str, Any]


class DryRunSample(Strict):
    procedure: str | None = Field(default=None, pattern=CODE_PATTERN)
    channel: Channel = "web"
    payload: dict[str, Any] = Field(default_factory=dict)
    latitude: float | None = Field(default=None, ge=-90, le=90, strict=True)
    longitude: float | None = Field(default=None, ge=-180, le=180, strict=True)


class DryRunResult(BaseModel):
    service: str
    service_name: str
    rule: int | None = Field(
        description="Numéro de la règle retenue ; absent : service par défaut."
    )
    neighbourhood: str | None
    explanation: str = Field(description="Pourquoi, en français.")


Phase = Literal["qualification", "processing", "delivery"]
Role = Literal["counter_agent", "case_handler", "service_head", "administrator", "dpo"]
STATUS_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
Piece = Annotated[str, Text(2, 300)]


class StatusWrite(Strict):
    code: str = Field(pattern=STATUS_PATTERN)
    label: Annotated[str, Text(3, 200)] = Field(description="Libellé lu par l'usager.")
    phase: Phase = Field(description="Phase GRC : qualification, traitement ou délivrance.")
    final: StrictBool = False


class NotifyAction(Strict):
    """Tell the citizen the new status, on their preferred channel."""

    type: Literal["notify"]


class CloseAction(Strict):
    """The explicit answer: the implicit-decision clock stops (final status only)."""

    type: Literal["close_with_decision"]


class RequestPiecesAction(Strict):
    """Ask the citizen for missing pieces: intake issues the legal request (R11)."""

    type: Literal["request_pieces"]
    pieces: list[Piece] | None = Field(
        default=None,
        min_length=1,
        max_length=30,
        description="Pièces à demander ; sinon, l'agent les indique en déclenchant.",
    )
    due_in_days: int = Field(
        default=15, ge=1, le=366, strict=True, description="Délai accordé (jours)."
    )


class AssignAction(Strict):
    """Hand the request to another service, team or agent."""

    type: Literal["assign"]
    service: str | None = Field(default=None, pattern=CODE_PATTERN)
    team: str | None = Field(default=None, pattern=CODE_PATTERN)
    agent: Annotated[str, Text(1, 200)] | None = None

    @model_validator(mode="after")
    def something(self) -> Self:
        if self.service is None and self.team is None and self.agent is None:
            raise field_error("service", "Indiquez au moins un service, une équipe ou un agent.")
        if self.team is not None and self.service is None:
            raise field_error("service", "Une équipe se désigne avec son service.")
        return self


class TransferAction(Strict):
    """Send the request on to the competent administration: intake does it (R12)."""

    type: Literal["transfer"]
    tenant: str | None = Field(
        default=None, pattern=TENANT_PATTERN, description="Collectivité servie par ce guichet."
    )
    administration_name: Annotated[str, Text(3, 200)] | None = None
    administration_url: HttpUrl | None = None
    reason: Annotated[str, Text(3, 500, lines=True)] = Field(description="Motif, lu par l'usager.")

    @model_validator(mode="after")
    def one_destination(self) -> Self:
        external = ("administration_name", "administration_url")
        given = [name for name in external if getattr(self, name) is not None]
        missing = [name for name in external if name not in given]
        if self.tenant is not None and given:
            field = given[0]  # both a collectivité and an outside administration
        elif self.tenant is None and missing:
            field = missing[0] if given else "tenant"
        else:
            return self
        raise field_error(
            field,
            "Indiquez soit une collectivité (tenant), soit une administration extérieure "
            "(administration_name et administration_url).",
        )


def _named(value: Any) -> Any:
    """`"notify"` is short for `{"type": "notify"}`."""
    return {"type": value} if isinstance(value, str) else value


ActionWrite = Annotated[
    NotifyAction | CloseAction | RequestPiecesAction | AssignAction | TransferAction,
    Field(discriminator="type"),
    BeforeValidator(_named),
]


class After(Strict):
    days: int | None = Field(default=None, ge=1, le=3650, strict=True)
    hours: int | None = Field(default=None, ge=1, le=8760, strict=True)

    @model_validator(mode="after")
    def one_unit(self) -> Self:
        if (self.days is None) == (self.hours is None):
            raise field_error(
                "hours" if self.days is not None else "days",
                "Un délai s'exprime en jours (days) ou en heures (hours).",
            )
        return self


class AutomaticWrite(Strict):
    """Exactly one trigger: a delay in the status, an event, or a form field."""

    after: After | None = Field(default=None, description="Délai passé dans le statut.")
    on: Literal["pieces_received"] | None = Field(
        default=None, description="Événement : pièces reçues."
    )
    when: FieldConditionWrite | None = Field(
        default=None, description="Condition sur le formulaire, vérifiée à l'entrée du statut."
    )

    @model_validator(mode="after")
    def one_trigger(self) -> Self:
        given = [name for name in ("after", "on", "when") if getattr(self, name) is not None]
        if len(given) != 1:
            raise field_error(
                given[1] if given else "after",
                "Une transition automatique a un seul déclencheur : after, on ou when.",
            )
        return self


class TransitionWrite(Strict):
    code: str = Field(pattern=STATUS_PATTERN)
    label: Annotated[str, Text(3, 200)] = Field(description="Libellé du bouton de l'agent.")
    from_: list[str] = Field(
        alias="from",
        min_length=1,
        max_length=50,
        description="Statuts depuis lesquels elle peut être déclenchée.",
    )
    to: str = Field(description="Statut d'arrivée.")
    actions: list[ActionWrite] = Field(default_factory=list, max_length=5)
    roles: list[Role] = Field(
        default_factory=list, max_length=5, description="Rôles autorisés (vide : tous)."
    )
    services: list[Annotated[str, Field(pattern=CODE_PATTERN)]] = Field(
        default_factory=list, max_length=50, description="Services autorisés (vide : tous)."
    )
    automatic: AutomaticWrite | None = Field(
        default=None, description="Déclenchement sans agent : délai, événement ou formulaire."
    )


class WorkflowWrite(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    initial: str = Field(description="Statut d'une demande qui arrive.")
    statuses: list[StatusWrite] = Field(min_length=1, max_length=50)
    transitions: list[TransitionWrite] = Field(max_length=200)


class WorkflowPublic(BaseModel):
    tenant: str
    procedure: str
    version: int = Field(description="0 : circuit par défaut, pas encore personnalisé.")
    definition: dict[str, Any]


class TransitionCreate(Strict):
    transition: str = Field(pattern=STATUS_PATTERN)
    comment: Annotated[str, Text(max_length=2000, lines=True)] | None = Field(
        default=None, description="Commentaire interne, non visible de l'usager."
    )
    pieces: list[Piece] | None = Field(
        default=None,
        min_length=1,
        max_length=30,
        description="Pièces à demander, si la transition en demande (remplace celles du circuit).",
    )


class HistoryEntry(BaseModel):
    at: datetime
    status: str
    label: str
    agent: str | None = Field(default=None, description="Qui l'a fait ; null : automatique.")
    comment: str | None = Field(default=None, description="Commentaire interne aux agents.")


class AssignmentPublic(BaseModel):
    request_id: uuid.UUID
    tracking_code: str
    service: str
    team: str | None = None
    agent: str | None = None
    status: str
    status_label: str
    phase: str
    workflow_version: int
    available_transitions: list[dict[str, str]]
    history: list[HistoryEntry] = Field(
        default_factory=list,
        description="Le parcours de la demande dans le circuit, commentaires internes "
        "compris ; vide pour qui ne traite pas le service auquel elle est confiée.",
    )


class AgentWrite(Strict):
    agent: Annotated[str, Text(max_length=200)] | None = Field(
        description="Agent ; null : remettre au service."
    )


class CommentWrite(Strict):
    text: Annotated[str, Text(1, 4000, lines=True)] = Field(description="Commentaire interne.")


class ServiceSettingsWrite(Strict):
    email: str | None = Field(
        default=None,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Adresse des alertes du service.",
    )
    commitment_days: int | None = Field(
        default=None, ge=1, le=365, strict=True, description="Engagement de réponse (jours)."
    )
    alert_mode: Literal["immediate", "digest"] = Field(
        default="immediate", description="Alerte à chaque demande, ou relevé périodique."
    )
    digest_period: Literal["daily", "weekly"] = Field(
        default="daily", description="Relevé quotidien, ou hebdomadaire (le lundi)."
    )
    digest_time: time = Field(
        default=time(8, 0), description="Heure locale du relevé (fuseau de la collectivité)."
    )

    @field_validator("digest_time")
    @classmethod
    def whole_minutes(cls, value: time) -> time:
        if value.second or value.microsecond or value.tzinfo:
            raise ValueError("Heure locale en heures et minutes (HH:MM), sans fuseau.")
        return value


class IncidentPolicyWrite(Strict):
    """R30: how close and how recent a report must be to join an open incident."""

    radius_m: int = Field(
        ge=1, le=5000, strict=True, description="Rayon, en mètres (50 par défaut)."
    )
    window_days: int = Field(
        ge=1,
        le=365,
        strict=True,
        description="Fenêtre, en jours depuis le premier signalement (30 par défaut).",
    )


class IncidentPolicyPublic(IncidentPolicyWrite):
    tenant: str
    procedure: str | None = Field(description="Absent : réglage de toute la collectivité.")
    inherited: bool = Field(
        description="Vrai quand la démarche n'a pas de réglage propre (celui de la "
        "collectivité, ou le défaut, s'applique)."
    )


# -- Open311 GeoReport v2: field names are the standard's ----------------------------------


class Open311Error(BaseModel):
    code: int = Field(description="Statut HTTP.")
    description: str = Field(description="Ce qui ne va pas, en français.")


class Open311Service(BaseModel):
    service_code: str = Field(description="Code de la démarche (signalement).")
    service_name: str
    description: str
    metadata: bool = Field(description="Toujours faux : pas d'attribut supplémentaire.")
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str
    group: str = Field(description="Service municipal compétent.")


class Open311ServiceDefinition(BaseModel):
    service_code: str
    attributes: list[dict[str, Any]]


class Open311Request(BaseModel):
    service_request_id: str = Field(description="Numéro de suivi de la demande.")
    status: Literal["open", "closed"]
    status_notes: str | None = Field(description="Étape, telle que l'usager la lit.")
    service_name: str
    service_code: str | None
    description: str | None
    agency_responsible: str
    service_notice: str | None
    requested_datetime: AwareDatetime
    updated_datetime: AwareDatetime | None
    expected_datetime: AwareDatetime | None = Field(description="Engagement du service.")
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float
    long: float
    media_url: str | None


class Open311Created(BaseModel):
    service_request_id: str | None = Field(
        default=None, description="Présent quand la demande est déjà aiguillée."
    )
    token: str = Field(description="À suivre sur tokens/{token} tant qu'elle ne l'est pas.")
    service_notice: str | None
    account_id: str | None = None


class Open311Token(BaseModel):
    service_request_id: str | None
    token: str


class Open311Endpoint(BaseModel):
    specification: str
    url: str
    changeset: str
    type: str
    formats: list[str]


class Open311Discovery(BaseModel):
    changeset: str
    contact: str
    key_service: str
    endpoints: list[Open311Endpoint]
