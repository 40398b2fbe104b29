"""The quotient familial provider port, API Particulier's wire format, and the sandbox adapter.

A real API Particulier client implements `QuotientFamilialProvider`: it sends
`api_particulier_query(request)` plus `recipient`, reads the body with
`parse_quotient_familial_payload`, and raises the `ProviderError` subclasses
below. The service never sees HTTP statuses, only these outcomes.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guichet_gateway.schemas import (
    Person,
    PostalAddress,
    QuotientFamilial,
    QuotientFamilialData,
)

# Port ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CivilStatus:
    """Who the quotient familial is asked for: API Particulier's identity parameters."""

    birth_name: str
    first_names: tuple[str, ...]
    sex: Literal["M", "F"]
    birth_country_code: str
    usage_name: str | None = None
    birth_year: int | None = None
    birth_month: int | None = None
    birth_day: int | None = None
    birth_municipality_code: str | None = None
    birth_municipality_name: str | None = None
    birth_department_code: str | None = None


@dataclass(frozen=True)
class QuotientFamilialRequest:
    civil_status: CivilStatus
    recipient: str  # SIRET of the administration the data is for
    year: int | None = None
    month: int | None = None


class ProviderError(Exception):
    """The provider answered, but not with the data."""

    def __init__(self, upstream_code: str | None = None, message: str = "") -> None:
        super().__init__(message or self.__class__.__name__)
        self.upstream_code = upstream_code


class IdentityNotFound(ProviderError):
    """No CAF or MSA file matches the civil status."""


class IdentityRejected(ProviderError):
    """The provider refused the civil status as malformed."""


class ProviderThrottled(ProviderError):
    def __init__(
        self, upstream_code: str | None = None, message: str = "", retry_after: int | None = None
    ) -> None:
        super().__init__(upstream_code, message)
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    """The provider, or the body behind it, did not answer in time or is down."""


class ProviderFailure(ProviderError):
    """Anything else: an unusable answer, a refusal of our credentials, a bug upstream."""


class QuotientFamilialProvider(Protocol):
    name: str  # recorded in the audit trail

    async def fetch(self, request: QuotientFamilialRequest) -> QuotientFamilialData:
        """Return the data or raise a `ProviderError` subclass."""
        ...


# API Particulier v3 wire format ---------------------------------------------------------------


def api_particulier_query(request: QuotientFamilialRequest) -> dict[str, str | list[str]]:
    """Query parameters of `/v3/dss/quotient_familial/identite`, `recipient` excepted."""
    status = request.civil_status
    values: dict[str, object] = {
        "nomNaissance": status.birth_name,
        "nomUsage": status.usage_name,
        "prenoms": list(status.first_names),
        "sexeEtatCivil": status.sex,
        "anneeDateNaissance": status.birth_year,
        "moisDateNaissance": status.birth_month,
        "jourDateNaissance": status.birth_day,
        "codeCogInseePaysNaissance": status.birth_country_code,
        "codeCogInseeCommuneNaissance": status.birth_municipality_code,
        "nomCommuneNaissance": status.birth_municipality_name,
        "codeCogInseeDepartementNaissance": status.birth_department_code,
        "annee": request.year,
        "mois": request.month,
    }
    query: dict[str, str | list[str]] = {}
    for key, value in values.items():
        if value is None:
            continue
        query[key] = [str(v) for v in value] if isinstance(value, list) else str(value)
    return query


class _Wire(BaseModel):
    # Upstream may add fields; only a missing or mistyped one makes the answer unusable.
    model_config = ConfigDict(extra="ignore")


class _WirePerson(_Wire):
    nom_naissance: str
    nom_usage: str | None = None
    prenoms: str
    date_naissance: str
    sexe: Literal["M", "F"]

    def to_person(self) -> Person:
        return Person(
            birth_name=self.nom_naissance,
            usage_name=self.nom_usage,
            first_names=self.prenoms,
            birth_date=self.date_naissance,
            sex=self.sexe,
        )


class _WireAddress(_Wire):
    destinataire: str
    complement_information: str | None = None
    complement_information_geographique: str | None = None
    numero_libelle_voie: str | None = None
    lieu_dit: str | None = None
    code_postal_ville: str
    pays: str


class _WireQuotient(_Wire):
    fournisseur: Literal["CNAF", "MSA"]
    valeur: int = Field(ge=0)
    annee: int
    mois: int = Field(ge=1, le=12)
    annee_calcul: int
    mois_calcul: int = Field(ge=1, le=12)


class _WireData(_Wire):
    allocataires: list[_WirePerson] = Field(min_length=1)
    enfants: list[_WirePerson]
    adresse: _WireAddress
    quotient_familial: _WireQuotient


class _WireBody(_Wire):
    data: _WireData


def parse_quotient_familial_payload(body: str | bytes) -> QuotientFamilialData:
    """Map a 200 body of API Particulier v3 to our schema; `ProviderFailure` if unusable."""
    try:
        data = _WireBody.model_validate_json(body).data
    except ValidationError as exc:
        raise ProviderFailure(message=f"unusable quotient familial payload: {exc}") from exc
    qf = data.quotient_familial
    address = data.adresse
    return QuotientFamilialData(
        quotient_familial=QuotientFamilial(
            supplier=qf.fournisseur,
            # Upstream sends 0 when it could not compute the quotient: not a zero income.
            value=qf.valeur if qf.valeur > 0 else None,
            computed=qf.valeur > 0,
            year=qf.annee,
            month=qf.mois,
            computation_year=qf.annee_calcul,
            computation_month=qf.mois_calcul,
        ),
        beneficiaries=[p.to_person() for p in data.allocataires],
        children=[p.to_person() for p in data.enfants],
        address=PostalAddress(
            addressee=address.destinataire,
            addressee_complement=address.complement_information,
            building_complement=address.complement_information_geographique,
            street=address.numero_libelle_voie,
            locality=address.lieu_dit,
            postcode_and_city=address.code_postal_ville,
            country=address.pays,
        ),
    )


def first_error_code(body: str | bytes) -> str | None:
    """`errors[0].code` of an API Particulier error body, if it has one."""
    try:
        parsed = json.loads(body)
        code = parsed["errors"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return str(code) if code is not None else None


def raise_for_status(status: int, body: str | bytes, retry_after: int | None = None) -> NoReturn:
    """Translate an API Particulier error status into the port's errors."""
    code = first_error_code(body)
    if status == 404:
        raise IdentityNotFound(code)
    if status == 422:
        raise IdentityRejected(code)
    if status == 429:
        raise ProviderThrottled(code, retry_after=retry_after)
    if status == 504:
        raise ProviderTimeout(code)
    # 401/403 (our credentials), 409 (same call in flight), 5xx: nothing the agent can fix.
    raise ProviderFailure(code, f"API Particulier answered {status}")


# Sandbox adapter -----------------------------------------------------------------------------

ParamsKey = frozenset[tuple[str, str | tuple[str, ...]]]


def _normalise(value: object) -> str | tuple[str, ...]:
    # Staging data mixes YAML integers and strings; the wire only carries text.
    if isinstance(value, list | tuple):
        return tuple(unicodedata.normalize("NFC", str(v)) for v in value)
    return unicodedata.normalize("NFC", str(value))


def params_key(params: Mapping[str, object]) -> ParamsKey:
    return frozenset((name, _normalise(value)) for name, value in params.items())


@dataclass(frozen=True)
class SandboxCase:
    name: str
    params: ParamsKey
    status: int
    payload: str


def load_cases(files: Iterable[Traversable | Path]) -> list[SandboxCase]:
    cases = []
    for file in sorted(files, key=lambda f: f.name):
        if not file.name.endswith((".yaml", ".yml")):
            continue
        raw: Any = yaml.safe_load(file.read_text(encoding="utf-8"))
        if not (
            isinstance(raw, dict)
            and isinstance(raw.get("params"), dict)
            and isinstance(raw.get("status"), int)
            and isinstance(raw.get("payload"), str)
        ):
            raise ValueError(f"sandbox case {file.name}: params, status and payload expected")
        cases.append(
            SandboxCase(file.name, params_key(raw["params"]), raw["status"], raw["payload"])
        )
    return cases


def packaged_cases_dir() -> Traversable:
    return resources.files("guichet_gateway").joinpath("sandbox", "quotient_familial_identite")


class SandboxQuotientFamilialProvider:
    """Replays the State's staging cases: a request gets the case whose params equal its own.

    Like the staging environment, it matches the upstream query exactly (after
    Unicode normalisation); a request that matches no case is not found.
    """

    name = "sandbox"

    def __init__(self, cases: Sequence[SandboxCase]) -> None:
        self.cases: dict[ParamsKey, SandboxCase] = {}
        for case in cases:
            other = self.cases.setdefault(case.params, case)
            if other is not case:
                raise ValueError(f"sandbox cases {other.name} and {case.name} share their params")

    @classmethod
    def from_directory(
        cls, directory: Traversable | Path | None = None
    ) -> SandboxQuotientFamilialProvider:
        folder = directory if directory is not None else packaged_cases_dir()
        cases = load_cases(folder.iterdir())
        if not cases:
            raise ValueError(f"no sandbox case found in {folder}")
        return cls(cases)

    def match(self, request: QuotientFamilialRequest) -> SandboxCase | None:
        return self.cases.get(params_key(api_particulier_query(request)))

    async def fetch(self, request: QuotientFamilialRequest) -> QuotientFamilialData:
        case = self.match(request)
        if case is None:
            raise IdentityNotFound(message="no sandbox case matches these parameters")
        if case.status == 200:
            return parse_quotient_familial_payload(case.payload)
        raise_for_status(case.status, case.payload)
