"""Open311 GeoReport v2 at `/open311/v2`: street reports from any standard client.

- `jurisdiction_id` is the tenant's code; it may be left out when this guichet serves
  a single collectivité (what the standard allows for a one-jurisdiction endpoint).
- Open311 "services" are the tenant's procedures of kind `signalement`, read from
  intake's public catalogue: intake owns the catalogue, routing keeps no copy.
- A POST files a real request through intake's public API (`POST /v1/requests` with an
  `Idempotency-Key`): intake timestamps and stores it and issues its receipt, exactly as
  for a web form (R23); routing never writes a request of its own. The answer carries a
  `token` (intake's request id) until routing has assigned the request, then the
  `service_request_id` (the tracking code citizens already know).
- Errors are the standard's bodies (a list of {code, description}), in French, in the
  format asked for; bad input is always a 4xx.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl

import httpx
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_plumbing.auth import PUBLIC, CurrentPrincipal, Kind, Principal, allow
from guichet_plumbing.db import Database
from guichet_plumbing.idempotency import check_key
from guichet_plumbing.jsonbody import JsonRoute, loads
from guichet_plumbing.problems import PROBLEM_MEDIA_TYPE, Problem
from guichet_routing import repository
from guichet_routing.repository import ReportFilter
from guichet_routing.schemas import (
    Open311Created,
    Open311Discovery,
    Open311Endpoint,
    Open311Error,
    Open311Request,
    Open311Service,
    Open311ServiceDefinition,
    Open311Token,
)
from guichet_routing.settings import RoutingSettings

PREFIX = "/open311/v2"
router = APIRouter(prefix=PREFIX, tags=["open311"], route_class=JsonRoute)

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-11-23T00:00:00Z"  # date of the last change to this endpoint's behaviour
MEDIA_TYPES = {"json": "application/json", "xml": "text/xml"}
MAX_REQUESTS = 1000  # the standard lets an endpoint cap a listing
MAX_SPAN = timedelta(days=90)  # the standard's default and longest date range
MAX_LIST = 100
ATTRIBUTE = re.compile(r"^attribute\[(.{1,64})\]$")
# Intake's field names, as an Open311 client knows them.
FIELD_NAMES = {
    "tenant": "jurisdiction_id",
    "procedure": "service_code",
    "applicant.name": "first_name",
    "applicant.given_name": "first_name",
    "applicant.family_name": "last_name",
    "applicant.email": "email",
    "applicant.phone": "phone",
    "location": "lat",
    "location.latitude": "lat",
    "location.longitude": "long",
    "location.address": "address_string",
}
# XML element of each item in a list, by the list's element.
XML_ITEMS = {"endpoints": "endpoint", "formats": "format", "attributes": "attribute"}


class Open311Failure(Exception):
    def __init__(self, status: int, *descriptions: str) -> None:
        super().__init__(descriptions[0])
        self.status = status
        self.errors = [Open311Error(code=status, description=d) for d in descriptions]


# -- rendering --------------------------------------------------------------------------------


def _render(fmt: str, root: str, body: BaseModel | list[Any], item: str, status: int) -> Response:
    data = (
        [m.model_dump(mode="json") for m in body]
        if isinstance(body, list)
        else body.model_dump(mode="json")
    )
    if fmt == "json":
        content = json.dumps(data, ensure_ascii=False).encode()
        return Response(content, status_code=status, media_type=MEDIA_TYPES["json"])
    top = ET.Element(root)
    if isinstance(data, list):
        for entry in data:
            _fill(ET.SubElement(top, item), entry)
    else:
        _fill(top, data)
    content = ET.tostring(top, encoding="utf-8", xml_declaration=True)
    return Response(content, status_code=status, media_type=f"{MEDIA_TYPES['xml']}; charset=utf-8")


def _fill(node: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            sub = ET.SubElement(node, key)
            if isinstance(child, list):
                for entry in child:
                    _fill(ET.SubElement(sub, XML_ITEMS.get(key, "item")), entry)
            else:
                _fill(sub, child)
    elif isinstance(value, bool):
        node.text = "true" if value else "false"
    elif value is not None:
        node.text = _NOT_IN_XML.sub("\ufffd", str(value))


# What XML 1.0 cannot carry (control characters, lone surrogates) but a citizen's text or
# an echoed query may hold: replaced, so that the document stays well-formed.
_NOT_IN_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


async def _answer(raw_format: str, produce: Callable[[str], Awaitable[Response]]) -> Response:
    """Runs `produce` in the asked format; any refusal becomes the standard's error list."""
    fmt = raw_format if raw_format in MEDIA_TYPES else "json"
    try:
        if raw_format not in MEDIA_TYPES:
            raise Open311Failure(
                400, f"Format « {raw_format[:20]} » non pris en charge : utilisez .json ou .xml."
            )
        return await produce(fmt)
    except Open311Failure as failure:
        return _render(fmt, "errors", failure.errors, "error", failure.status)
    except Problem as problem:
        return _render(
            fmt,
            "errors",
            [Open311Error(code=problem.status, description=problem.detail)],
            "error",
            problem.status,
        )


# -- shared pieces ----------------------------------------------------------------------------


def _db(request: Request) -> Database:
    db: Database = request.app.state.runtime.db
    return db


def _settings(request: Request) -> RoutingSettings:
    settings: RoutingSettings = request.app.state.runtime.settings
    return settings


async def _tenant(session: AsyncSession, jurisdiction_id: str | None) -> str:
    if jurisdiction_id:
        if (
            len(jurisdiction_id) > 64
            or await repository.get_tenant(session, jurisdiction_id) is None
        ):
            raise Open311Failure(
                404,
                f"jurisdiction_id : la collectivité « {jurisdiction_id[:64]} » n'est pas "
                "servie par ce guichet.",
            )
        return jurisdiction_id
    codes = await repository.tenant_codes(session, limit=2)
    if len(codes) != 1:
        raise Open311Failure(
            400,
            "jurisdiction_id : ce guichet sert plusieurs collectivités ; indiquez le code de "
            "la vôtre.",
        )
    return codes[0]


async def _resolve(request: Request, jurisdiction_id: str | None) -> str:
    async with _db(request).sessions() as session:
        return await _tenant(session, jurisdiction_id)


def _intake(request: Request) -> httpx.AsyncClient:
    settings = _settings(request)
    return httpx.AsyncClient(
        base_url=settings.intake_url.rstrip("/"), timeout=settings.intake_timeout
    )


async def _catalogue(request: Request, tenant: str) -> list[Open311Service]:
    """The tenant's report procedures, from intake's public catalogue."""
    try:
        async with _intake(request) as http:
            answer = await http.get("/v1/procedures", params={"tenant": tenant})
    except httpx.HTTPError as exc:
        raise _unavailable() from exc
    if answer.status_code == 404:
        raise Open311Failure(
            404, f"jurisdiction_id : la collectivité « {tenant} » n'a pas de catalogue ici."
        )
    if not answer.is_success:
        raise _unavailable()
    return [
        Open311Service(
            service_code=p["code"],
            service_name=p["title"],
            description=f"{p['title']} — traité par : {p['service']['designation']}",
            metadata=False,
            type="realtime",
            keywords="signalement",
            group=p["service"]["designation"],
        )
        for p in answer.json()["items"]
        if p["kind"] == "signalement"
    ]


def _unavailable() -> Open311Failure:
    return Open311Failure(
        503,
        "Le guichet ne peut pas joindre le service d'enregistrement des demandes pour "
        "l'instant : réessayez dans quelques minutes. Aucun signalement n'a été perdu ; "
        "si vous renvoyez le même, il ne sera pas compté deux fois.",
    )


async def _service(request: Request, tenant: str, code: str) -> Open311Service:
    for service in await _catalogue(request, tenant):
        if service.service_code == code:
            return service
    raise Open311Failure(
        404, f"service_code : « {code[:64]} » n'est pas un signalement de cette collectivité."
    )


# -- reading ----------------------------------------------------------------------------------

Format = Annotated[str, Path(description="json ou xml.")]
Jurisdiction = Annotated[
    str | None, Query(description="Code de la collectivité ; facultatif si elle est seule.")
]
ERRORS = {
    "description": "Erreurs au format Open311 (liste de {code, description}).",
    "content": {
        "application/json": {
            "schema": {"type": "array", "items": Open311Error.model_json_schema()}
        },
        "text/xml": {"schema": {"type": "string"}},
        PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}},
    },
}


def _ok(model: type[BaseModel], many: bool = True) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "description": "Réponse au format demandé (.json ou .xml).",
        "content": {
            "application/json": {"schema": {"type": "array", "items": schema} if many else schema},
            "text/xml": {"schema": {"type": "string"}},
        },
    }


def _responses(model: type[BaseModel], *errors: int, many: bool = True) -> dict[int | str, Any]:
    return {200: _ok(model, many), **dict.fromkeys(errors, ERRORS)}


@router.get(
    "/discovery.{fmt}",
    dependencies=[PUBLIC],
    response_class=Response,
    summary="Découverte Open311 : où et comment parler à ce guichet",
    responses=_responses(Open311Discovery, 400, many=False),
)
async def open311_discovery(request: Request, fmt: Format) -> Response:
    async def produce(f: str) -> Response:
        base = str(request.url).split("?")[0].rsplit("/discovery.", 1)[0]
        body = Open311Discovery(
            changeset=CHANGESET,
            contact="Adressez-vous à l'accueil de votre mairie.",
            key_service="Clé d'API (api_key) délivrée par la collectivité, si elle en exige une.",
            endpoints=[
                Open311Endpoint(
                    specification=SPECIFICATION,
                    url=base,
                    changeset=CHANGESET,
                    type="production",
                    formats=["application/json", "text/xml"],
                )
            ],
        )
        return _render(f, "discovery", body, "", 200)

    return await _answer(fmt, produce)


@router.get(
    "/services.{fmt}",
    dependencies=[PUBLIC],
    response_class=Response,
    summary="Liste des types de signalement (démarches de type signalement)",
    responses=_responses(Open311Service, 400, 404, 503),
)
async def open311_services(
    request: Request, fmt: Format, jurisdiction_id: Jurisdiction = None
) -> Response:
    async def produce(f: str) -> Response:
        tenant = await _resolve(request, jurisdiction_id)
        return _render(f, "services", await _catalogue(request, tenant), "service", 200)

    return await _answer(fmt, produce)


@router.get(
    "/services/{service_code}.{fmt}",
    dependencies=[PUBLIC],
    response_class=Response,
    summary="Définition d'un type de signalement (sans attribut supplémentaire)",
    responses=_responses(Open311ServiceDefinition, 400, 404, 503, many=False),
)
async def open311_service_definition(
    request: Request,
    service_code: Annotated[str, Path(description="Code de la démarche.")],
    fmt: Format,
    jurisdiction_id: Jurisdiction = None,
) -> Response:
    async def produce(f: str) -> Response:
        tenant = await _resolve(request, jurisdiction_id)
        service = await _service(request, tenant, service_code)
        body = Open311ServiceDefinition(service_code=service.service_code, attributes=[])
        return _render(f, "service_definition", body, "", 200)

    return await _answer(fmt, produce)


def _open311_request(row: Any) -> Open311Request:
    others = (row.reporters or 1) - 1
    return Open311Request(
        service_request_id=row.tracking_code,
        status="closed" if row.closed else "open",
        status_notes=row.status_label,
        service_name=row.procedure_title,
        service_code=row.procedure_code,
        description=row.description,
        agency_responsible=row.service_name,
        service_notice=(
            f"Problème signalé aussi par {others} autre(s) personne(s) : une seule "
            "intervention est prévue."
            if others
            else None
        ),
        requested_datetime=row.received_at,
        updated_datetime=row.updated_at,
        expected_datetime=row.due_at,
        address=row.address,
        address_id=None,
        zipcode=None,
        lat=row.latitude,
        long=row.longitude,
        media_url=row.media_url,
    )


def _listed(name: str, raw: str | None) -> list[str]:
    values = [v.strip() for v in (raw or "").split(",") if v.strip()]
    if len(values) > MAX_LIST:
        raise Open311Failure(400, f"{name} : au plus {MAX_LIST} valeurs.")
    return [v[:64] for v in values]


def _when(name: str, raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise Open311Failure(
            400,
            f"{name} : date et heure invalides ; format attendu : 2026-11-02T08:00:00Z.",
        ) from None
    if value.tzinfo is None:
        raise Open311Failure(400, f"{name} : précisez le fuseau horaire (Z ou +01:00).")
    return value


def _period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """The standard's range: 90 days by default, never more."""
    if start and end:
        if end < start:
            raise Open311Failure(400, "end_date : elle précède start_date.")
        if end - start > MAX_SPAN:
            raise Open311Failure(400, "start_date, end_date : la période dépasse 90 jours.")
        return start, end
    if start:
        return start, start + MAX_SPAN
    if end:
        return end - MAX_SPAN, end
    now = datetime.now(UTC)
    return now - MAX_SPAN, now


def _closed(raw: str | None) -> bool | None:
    wanted = set(_listed("status", raw))
    unknown = wanted - {"open", "closed"}
    if unknown:
        raise Open311Failure(
            400, f"status : « {sorted(unknown)[0]} » inconnu ; valeurs possibles : open, closed."
        )
    return None if len(wanted) != 1 else wanted == {"closed"}


@router.get(
    "/requests.{fmt}",
    dependencies=[PUBLIC],
    response_class=Response,
    summary="Signalements, filtrés selon le standard (numéros, types, période, statut)",
    description="Les plus récents d'abord ; 90 jours par défaut, 1 000 au plus.",
    responses=_responses(Open311Request, 400, 404),
)
async def open311_requests(
    request: Request,
    fmt: Format,
    jurisdiction_id: Jurisdiction = None,
    service_request_id: Annotated[
        str | None, Query(description="Numéros de suivi, séparés par des virgules.")
    ] = None,
    service_code: Annotated[
        str | None, Query(description="Types, séparés par des virgules.")
    ] = None,
    start_date: Annotated[
        str | None, Query(description="Début (W3C, ex. 2026-11-02T08:00:00Z).")
    ] = None,
    end_date: Annotated[str | None, Query(description="Fin (W3C).")] = None,
    status: Annotated[str | None, Query(description="open, closed, ou les deux.")] = None,
) -> Response:
    async def produce(f: str) -> Response:
        codes = [c.upper() for c in _listed("service_request_id", service_request_id)]
        where = ReportFilter(tenant="", tracking_codes=codes)
        if not codes:  # the standard: numbers override every other filter
            start, end = _period(_when("start_date", start_date), _when("end_date", end_date))
            where = ReportFilter(
                tenant="",
                procedures=_listed("service_code", service_code),
                closed=_closed(status),
                start=start,
                end=end,
            )
        async with _db(request).sessions() as session:
            tenant = await _tenant(session, jurisdiction_id)
            rows = await repository.list_reports(
                session, dataclasses.replace(where, tenant=tenant), MAX_REQUESTS
            )
        return _render(f, "service_requests", [_open311_request(r) for r in rows], "request", 200)

    return await _answer(fmt, produce)


@router.get(
    "/requests/{service_request_id}.{fmt}",
    dependencies=[PUBLIC],
    response_class=Response,
    summary="Un signalement, par son numéro de suivi",
    responses=_responses(Open311Request, 400, 404),
)
async def open311_request(
    request: Request,
    service_request_id: Annotated[str, Path(description="Numéro de suivi.")],
    fmt: Format,
    jurisdiction_id: Jurisdiction = None,
) -> Response:
    async def produce(f: str) -> Response:
        async with _db(request).sessions() as session:
            tenant = await _tenant(session, jurisdiction_id)
            rows = await repository.list_reports(
                session,
                ReportFilter(tenant=tenant, tracking_codes=[service_request_id[:64].upper()]),
                1,
            )
        if not rows:
            raise Open311Failure(
                404, f"Aucun signalement ne porte le numéro « {service_request_id[:64]} »."
            )
        return _render(f, "service_requests", [_open311_request(rows[0])], "request", 200)

    return await _answer(fmt, produce)


@router.get(
    "/tokens/{token}.{fmt}",
    dependencies=[PUBLIC],
    response_class=Response,
    summary="Numéro de suivi d'un signalement déposé, une fois aiguillé",
    responses=_responses(Open311Token, 400, 404),
)
async def open311_token(
    request: Request,
    token: Annotated[str, Path(description="Jeton rendu au dépôt.")],
    fmt: Format,
    jurisdiction_id: Jurisdiction = None,
) -> Response:
    async def produce(f: str) -> Response:
        unknown = Open311Failure(404, "Aucun signalement ne correspond à ce jeton.")
        try:
            key = uuid.UUID(token)
        except ValueError:
            raise unknown from None
        async with _db(request).sessions() as session:
            tenant = await _tenant(session, jurisdiction_id)
            handed = await repository.get_token(session, key)
            routed = await repository.get_assignment(session, key)
        if handed is None or handed.tenant != tenant:
            raise unknown
        body = [
            Open311Token(
                service_request_id=routed.tracking_code if routed else None, token=str(key)
            )
        ]
        return _render(f, "service_requests", body, "request", 200)

    return await _answer(fmt, produce)


# -- filing a report --------------------------------------------------------------------------

POST_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["service_code", "lat", "long"],
                    "properties": {
                        "jurisdiction_id": {"type": "string"},
                        "api_key": {"type": "string"},
                        "service_code": {"type": "string", "description": "Type de signalement."},
                        "lat": {"type": "number", "minimum": -90, "maximum": 90},
                        "long": {"type": "number", "minimum": -180, "maximum": 180},
                        "address_string": {"type": "string", "description": "Adresse lisible."},
                        "email": {"type": "string", "description": "Pour être prévenu."},
                        "phone": {"type": "string"},
                        "first_name": {"type": "string"},
                        "last_name": {"type": "string"},
                        "description": {"type": "string"},
                        "media_url": {"type": "string"},
                        "device_id": {"type": "string"},
                        "account_id": {"type": "string"},
                    },
                }
            }
        },
    }
}


async def _fields(request: Request) -> dict[str, str]:
    """Query and form fields (the standard posts a form; a JSON object is accepted too)."""
    fields = dict(request.query_params)
    raw = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            decoded = loads(raw or b"{}")
            if not isinstance(decoded, dict):
                raise ValueError("not an object")
            fields.update({str(k): "" if v is None else str(v) for k, v in decoded.items()})
        elif raw:
            fields.update(parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=200))
    except (ValueError, UnicodeDecodeError):
        raise Open311Failure(
            400, "Corps illisible : envoyez un formulaire (application/x-www-form-urlencoded)."
        ) from None
    return {k: v.strip() for k, v in fields.items()}


def _coordinate(fields: dict[str, str], name: str, bound: float) -> float:
    raw = fields.get(name)
    if not raw:
        raise Open311Failure(
            400, f"{name} : obligatoire ; ce guichet localise les signalements par coordonnées."
        )
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > bound:
        raise Open311Failure(
            400, f"{name} : degrés décimaux WGS 84 attendus, entre -{bound:g} et {bound:g}."
        )
    return value


def _intake_body(tenant: str, fields: dict[str, str]) -> dict[str, Any]:
    faults = []
    if not fields.get("service_code"):
        faults.append("service_code : obligatoire.")
    email, phone = fields.get("email") or None, fields.get("phone") or None
    if not email and not phone:
        faults.append(
            "email ou phone : indiquez au moins l'un des deux, pour recevoir l'accusé de "
            "réception et être prévenu de la réparation."
        )
    coordinates = []
    for name, bound in (("lat", 90.0), ("long", 180.0)):
        try:
            coordinates.append(_coordinate(fields, name, bound))
        except Open311Failure as failure:
            faults.append(failure.errors[0].description)
    if faults:
        raise Open311Failure(400, *faults)
    first, last = fields.get("first_name") or None, fields.get("last_name") or None
    attributes = {m[1]: v for k, v in fields.items() if (m := ATTRIBUTE.match(k))}
    payload: dict[str, Any] = {
        key: fields[key]
        for key in ("description", "media_url", "device_id", "account_id")
        if fields.get(key)
    }
    if attributes:
        payload["attributes"] = attributes
    return {
        "tenant": tenant,
        "procedure": fields["service_code"],
        "channel": "web",
        "applicant": {
            "name": " ".join(p for p in (first, last) if p) or "Anonyme",
            "given_name": first,
            "family_name": last,
            "email": email,
            "phone": phone,
        },
        "contact_preference": "email" if email else "sms",
        "payload": payload,
        "location": {
            "latitude": coordinates[0],
            "longitude": coordinates[1],
            "address": fields.get("address_string") or None,
        },
    }


def _refusal(answer: httpx.Response) -> Open311Failure:
    """Intake's problem details, in Open311 words."""
    if answer.status_code >= 500:
        return _unavailable()
    try:
        problem = answer.json()
        params = problem.get("invalid-params") or []
        descriptions = [
            f"{FIELD_NAMES.get(p['name'], p['name'])} : {p['reason']}" for p in params
        ] or [str(problem["detail"])]
    except (ValueError, KeyError, TypeError, AttributeError):
        descriptions = ["Signalement refusé par le guichet."]
    return Open311Failure(400 if answer.status_code == 422 else answer.status_code, *descriptions)


# Open like the web form (GeoReport v2 apps post anonymously); another system files with a
# client token scoped `open311:write`, which stands for an `api_key`.
REPORT = allow("open311-report", anonymous=True, scopes=["open311:write"])


def _check_caller(
    settings: RoutingSettings, principal: Principal, tenant: str, given: str | None
) -> None:
    if principal.kind is Kind.client:
        # The policy checked the scope; a system files for its own collectivité only.
        if not principal.has_scope(tenant, "open311:write"):
            raise Open311Failure(
                403,
                "jurisdiction_id : votre client n'est pas autorisé à déposer des "
                f"signalements pour « {tenant} ».",
            )
        return
    if settings.open311_api_keys and not any(
        hmac.compare_digest((given or "").encode(), key.encode())
        for key in settings.open311_api_keys
    ):
        raise Open311Failure(
            403, "api_key : clé absente ou inconnue ; demandez-en une à la collectivité."
        )


async def _file(request: Request, tenant: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    """Intake's POST, retried on a lost connection with the same key: never two requests."""
    async with _intake(request) as http:
        for attempt in range(3):
            try:
                answer = await http.post(
                    "/v1/requests", json=body, headers={"Idempotency-Key": key}
                )
                break
            except httpx.TransportError as exc:
                if attempt == 2:
                    raise _unavailable() from exc
    if answer.status_code != 201:
        raise _refusal(answer)
    created: dict[str, Any] = answer.json()
    return created


@router.post(
    "/requests.{fmt}",
    response_class=Response,
    status_code=201,
    summary="Déposer un signalement (enregistré et horodaté comme toute demande, avec son "
    "accusé de réception)",
    description="Répond un `token` tant que la demande n'est pas aiguillée, puis le "
    "`service_request_id` (numéro de suivi). Un en-tête `Idempotency-Key` rend le renvoi "
    "sans risque de doublon. Ouvert à tous comme le formulaire en ligne, sauf si la "
    "collectivité exige une `api_key` ; un autre système peut présenter à la place un jeton "
    "de client portant la portée `open311:write`.",
    responses={
        201: _ok(Open311Created),
        **dict.fromkeys((400, 403, 404, 409, 413, 503), ERRORS),
    },
    openapi_extra=POST_FORM,
    dependencies=[REPORT],
)
async def open311_post_request(
    request: Request, principal: CurrentPrincipal, fmt: Format
) -> Response:
    async def produce(f: str) -> Response:
        fields = await _fields(request)
        tenant = await _resolve(request, fields.get("jurisdiction_id"))
        _check_caller(_settings(request), principal, tenant, fields.get("api_key"))
        body = _intake_body(tenant, fields)
        await _service(request, tenant, body["procedure"])
        given = request.headers.get("idempotency-key")
        key = (
            "open311-" + hashlib.sha256(check_key(given).encode()).hexdigest()
            if given is not None
            else f"open311-{uuid.uuid4()}"
        )
        created = await _file(request, tenant, body, key)
        token = uuid.UUID(created["id"])
        async with _db(request).transaction() as session:
            await repository.insert_token(session, token, tenant, datetime.now(UTC))
            routed = await repository.get_assignment(session, token)
        answer = Open311Created(
            service_request_id=routed.tracking_code if routed else None,
            token=str(token),
            service_notice=f"Signalement enregistré sous le n° {created['tracking_code']} ; "
            "l'accusé de réception vous est adressé.",
        )
        return _render(f, "service_requests", [answer], "request", 201)

    return await _answer(fmt, produce)
