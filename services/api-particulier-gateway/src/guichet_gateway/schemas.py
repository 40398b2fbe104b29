"""API models: English field names, French descriptions for the agents' developers."""

from __future__ import annotations

import calendar
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from guichet_gateway.policy import FORBIDDEN_PURPOSES, Dataset, Outcome, allowed_purposes_text
from guichet_plumbing.identifiers import siret_error
from guichet_plumbing.problems import InvalidParam
from guichet_plumbing.text import Text

FRANCE = "99100"


def _check_siret(value: str) -> str:
    if siret_error(value) is not None or not value.isdigit():
        raise ValueError(
            "SIRET invalide : 14 chiffres attendus, dont le dernier est une clé de contrôle "
            "(algorithme de Luhn). Recopiez-le depuis l'annuaire des entreprises."
        )
    return value


Siret = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_check_siret)]
# Its length as sent, as the schema says, then trimmed.
Name = Annotated[str, Text(1, 100)]
Slug = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]
ProcedureCode = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9._-]*$")
]


class QuotientFamilialQuery(BaseModel):
    """Query parameters of `GET /v1/quotient-familial`.

    The identity fields mirror API Particulier v3 (`/v3/dss/quotient_familial/identite`);
    their upstream names are given in each description.
    """

    model_config = ConfigDict(extra="forbid")

    tenant: Slug = Field(
        description="Collectivité pour le compte de laquelle la donnée est "
        "demandée (identifiant court, ex. `ville-exemple`)."
    )
    procedure: ProcedureCode = Field(
        description="Démarche pour laquelle la donnée est demandée (ex. `tarif-cantine`). "
        "La donnée ne sert qu'à cette démarche (règle R16)."
    )
    purpose: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="Finalité de la consultation. Valeurs admises : "
        f"{allowed_purposes_text()}. Toute autre finalité, notamment "
        f"{', '.join(FORBIDDEN_PURPOSES)}, est refusée (règle R16)."
    )
    consent: bool = Field(
        description="`true` si le consentement de l'usager à cette consultation est recueilli "
        "et enregistré dans son dossier. Sans lui, la consultation est refusée (règle R16)."
    )
    recipient: Siret = Field(
        description="SIRET de l'administration destinataire de la donnée (14 chiffres, clé de "
        "Luhn vérifiée). Transmis tel quel à API Particulier (`recipient`).",
        examples=["13002526500013"],
    )

    birth_name: Name = Field(
        description="Nom de naissance (nom de famille) tel qu'il figure à "
        "l'état civil. API Particulier : `nomNaissance`."
    )
    usage_name: Name | None = Field(
        default=None,
        description="Nom d'usage, s'il diffère du nom de naissance. API Particulier : `nomUsage`.",
    )
    first_names: list[Name] = Field(
        min_length=1,
        max_length=3,
        description="Prénoms, de un à trois, dans l'ordre de l'état civil ; en donner plusieurs "
        "évite les homonymies. Paramètre répété (`first_names=A&first_names=B`). "
        "API Particulier : `prenoms[]`.",
    )
    sex: Literal["M", "F"] = Field(
        description="Sexe à l'état civil : `M` ou `F`. API Particulier : `sexeEtatCivil`."
    )
    birth_year: int | None = Field(
        default=None,
        ge=1850,
        le=2100,
        description="Année de naissance. API Particulier : `anneeDateNaissance`.",
    )
    birth_month: int | None = Field(
        default=None,
        ge=1,
        le=12,
        description="Mois de naissance (1 à 12), seulement avec "
        "l'année. API Particulier : `moisDateNaissance`.",
    )
    birth_day: int | None = Field(
        default=None,
        ge=1,
        le=31,
        description="Jour de naissance, seulement avec le mois. "
        "API Particulier : `jourDateNaissance`.",
    )
    birth_country_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{5}$")] = Field(
        description="Code INSEE (COG) à 5 chiffres du pays de naissance ; `99100` pour la "
        "France. API Particulier : `codeCogInseePaysNaissance`.",
        examples=["99100"],
    )
    birth_municipality_code: (
        Annotated[str, StringConstraints(pattern=r"^[0-9][0-9AB][0-9]{3}$")] | None
    ) = Field(
        default=None,
        description="Code INSEE (COG) à 5 caractères de la commune de "
        "naissance, pour une personne née en France (ex. `08480`, `2A004`). "
        "API Particulier : `codeCogInseeCommuneNaissance`.",
    )
    birth_municipality_name: Name | None = Field(
        default=None,
        description="Nom de la commune de naissance, à défaut de son code : "
        "exige alors `birth_department_code` et `birth_year`. "
        "API Particulier : `nomCommuneNaissance`.",
    )
    birth_department_code: (
        Annotated[str, StringConstraints(pattern=r"^([0-9]{2,3}|2[AB])$")] | None
    ) = Field(
        default=None,
        description="Code INSEE du département de naissance, avec "
        "`birth_municipality_name`. API Particulier : `codeCogInseeDepartementNaissance`.",
    )
    year: int | None = Field(
        default=None,
        ge=2000,
        le=2100,
        description="Année du quotient familial voulu ; par défaut "
        "l'année en cours (historique de deux ans au plus). "
        "API Particulier : `annee`.",
    )
    month: int | None = Field(
        default=None,
        ge=1,
        le=12,
        description="Mois du quotient familial voulu ; par défaut le mois "
        "en cours. API Particulier : `mois`.",
    )

    def cross_field_errors(self) -> list[InvalidParam]:
        """Rules that bind several fields, checked before anything is traced or called."""
        errors: list[InvalidParam] = []
        if self.birth_month is not None and self.birth_year is None:
            errors.append(
                InvalidParam(
                    name="birth_month", reason="Le mois de naissance exige l'année de naissance."
                )
            )
        if self.birth_day is not None and self.birth_month is None:
            errors.append(
                InvalidParam(
                    name="birth_day", reason="Le jour de naissance exige le mois de naissance."
                )
            )
        if self.birth_year and self.birth_month and self.birth_day:
            last = calendar.monthrange(self.birth_year, self.birth_month)[1]
            if self.birth_day > last:
                errors.append(
                    InvalidParam(name="birth_day", reason="Cette date de naissance n'existe pas.")
                )
        by_name = self.birth_municipality_name is not None
        place = (
            self.birth_municipality_code is not None
            or by_name
            or self.birth_department_code is not None
        )
        if self.birth_country_code != FRANCE:
            if place:
                errors.append(
                    InvalidParam(
                        name="birth_country_code",
                        reason="Pour une personne née à l'étranger, ne renseignez ni commune ni "
                        "département de naissance.",
                    )
                )
        elif self.birth_municipality_code is not None and by_name:
            errors.append(
                InvalidParam(
                    name="birth_municipality_name",
                    reason="Donnez le code de la commune de naissance ou son nom, pas les deux.",
                )
            )
        elif self.birth_municipality_code is None:
            if not by_name:
                errors.append(
                    InvalidParam(
                        name="birth_municipality_code",
                        reason="Pour une personne née en France, le code de la commune de "
                        "naissance est obligatoire (ou son nom avec le département et l'année).",
                    )
                )
            else:
                if self.birth_department_code is None:
                    errors.append(
                        InvalidParam(
                            name="birth_department_code",
                            reason="Avec le nom de la commune de naissance, le département de "
                            "naissance est obligatoire.",
                        )
                    )
                if self.birth_year is None:
                    errors.append(
                        InvalidParam(
                            name="birth_year",
                            reason="Avec le nom de la commune de naissance, l'année de naissance "
                            "est obligatoire.",
                        )
                    )
        elif self.birth_department_code is not None:
            errors.append(
                InvalidParam(
                    name="birth_department_code",
                    reason="Le département de naissance ne s'emploie qu'avec le nom de la commune.",
                )
            )
        return errors


# Responses ---------------------------------------------------------------------------------


class Person(BaseModel):
    birth_name: str = Field(description="Nom de naissance.")
    usage_name: str | None = Field(description="Nom d'usage, s'il y en a un.")
    first_names: str = Field(
        description="Prénoms, séparés par des espaces, tels que transmis par la CAF ou la MSA."
    )
    birth_date: str = Field(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        description="Date de naissance AAAA-MM-JJ ; `00` remplace un jour ou un mois inconnu.",
    )
    sex: Literal["M", "F"] = Field(description="Sexe : `M` ou `F`.")


class PostalAddress(BaseModel):
    """Adresse déclarée à la CAF ou à la MSA, aux normes postales ; elle peut être ancienne."""

    addressee: str = Field(description="Civilité, nom et prénom du destinataire.")
    addressee_complement: str | None = Field(
        description="Complément d'identification du destinataire ou du point de remise."
    )
    building_complement: str | None = Field(
        description="Complément de localisation (bâtiment, résidence…)."
    )
    street: str | None = Field(description="Numéro et libellé de la voie.")
    locality: str | None = Field(description="Lieu-dit, boîte postale ou poste restante.")
    postcode_and_city: str = Field(description="Code postal et localité.")
    country: str = Field(description="Pays.")


class QuotientFamilial(BaseModel):
    supplier: Literal["CNAF", "MSA"] = Field(
        description="Organisme qui a calculé le quotient : CNAF (CAF) ou MSA."
    )
    value: int | None = Field(
        description="Quotient familial en euros. `null` quand l'organisme n'a pas pu le "
        "calculer (il transmet alors 0, qui ne signifie pas un revenu nul)."
    )
    computed: bool = Field(
        description="`false` si le quotient n'a pas pu être calculé : "
        "demandez alors une attestation à l'usager."
    )
    year: int = Field(description="Année à laquelle le quotient s'applique.")
    month: int = Field(description="Mois auquel le quotient s'applique.")
    computation_year: int = Field(
        description="Année du calcul (peut différer en cas de recalcul après une rectification)."
    )
    computation_month: int = Field(description="Mois du calcul.")


class QuotientFamilialData(BaseModel):
    quotient_familial: QuotientFamilial
    beneficiaries: list[Person] = Field(
        description="Allocataire et, le cas échéant, son conjoint (composition du mois en cours)."
    )
    children: list[Person] = Field(description="Enfants du foyer (composition du mois en cours).")
    address: PostalAddress


class QuotientFamilialResponse(QuotientFamilialData):
    consultation_id: uuid.UUID = Field(
        description="Identifiant de la trace de cette consultation dans le journal d'audit."
    )
    provider: str = Field(
        description="Source de la donnée (`sandbox` : données fictives de "
        "l'environnement de test de l'État)."
    )


class AuditEntry(BaseModel):
    """Une consultation tracée (règle R16) ; aucune donnée personnelle de l'usager."""

    id: uuid.UUID
    occurred_at: datetime = Field(description="Date et heure de la consultation (UTC).")
    tenant: str = Field(description="Collectivité.")
    procedure: str = Field(description="Démarche pour laquelle la donnée était demandée.")
    purpose: str = Field(description="Finalité déclarée.")
    consent: bool = Field(description="Consentement de l'usager déclaré.")
    agent_id: str = Field(
        description="Agent ou application à l'origine de l'appel "
        "(`anonymous` s'il n'est pas identifié)."
    )
    recipient: str = Field(description="SIRET de l'administration destinataire.")
    dataset: Dataset = Field(description="Donnée demandée.")
    provider: str | None = Field(
        description="Fournisseur interrogé ; `null` si la demande a été refusée avant tout appel."
    )
    outcome: Outcome = Field(description="Issue de la consultation.")
    status_code: int = Field(description="Statut HTTP rendu à l'appelant.")
    upstream_code: str | None = Field(description="Code d'erreur du fournisseur, le cas échéant.")


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None = Field(
        description="À repasser dans `cursor` pour la page suivante ; `null` en fin de liste."
    )
