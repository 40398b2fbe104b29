"""RFC 9457 problem details, in French, for every error a service returns.

Bad input always gets a 4xx with a `detail` a citizen can act on; oversized
bodies are refused from their headers or first bytes, before anything is parsed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guichet_plumbing.jsonbody import (
    LONE_SURROGATE,
    NOT_A_NUMBER,
    NOT_UNICODE,
    TOO_DEEP,
    TOO_LONG_NUMBER,
)

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://guichet.example/problems/"


class InvalidParam(BaseModel):
    name: str = Field(description="Champ concerné, en notation pointée (ex. `applicant.email`).")
    reason: str = Field(description="Ce qui ne va pas, en français.")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(populate_by_name=True)

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    invalid_params: list[InvalidParam] | None = Field(default=None, alias="invalid-params")


class Problem(Exception):
    """A domain error that knows its HTTP status and its French wording."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        invalid_params: list[InvalidParam] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.invalid_params = invalid_params
        self.headers = headers

    def response(self, instance: str | None = None) -> JSONResponse:
        body = ProblemDetails(
            type=TYPE_BASE + self.slug,
            title=self.title,
            status=self.status,
            detail=self.detail,
            instance=instance,
            invalid_params=self.invalid_params,
        ).model_dump(by_alias=True, exclude_none=True)
        return JSONResponse(
            body, status_code=self.status, media_type=PROBLEM_MEDIA_TYPE, headers=self.headers
        )


def unknown_tenant(code: str) -> Problem:
    """The same answer from every service for a collectivité it does not serve."""
    return Problem(
        404,
        "tenant-unknown",
        "Collectivité inconnue",
        f"La collectivité « {code} » n'est pas servie par ce guichet. Vérifiez le "
        "code de la collectivité.",
        [InvalidParam(name="tenant", reason="Collectivité inconnue.")],
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries so the OpenAPI documents each problem a route may return."""
    return {
        status: {
            "model": ProblemDetails,
            "content": {
                PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
            },
            "description": _STATUS_TITLES.get(status, "Erreur"),
        }
        for status in statuses
    }


_STATUS_TITLES = {
    400: "Requête mal formée",
    403: "Action refusée",
    404: "Ressource introuvable",
    405: "Méthode non autorisée",
    406: "Format de réponse non disponible",
    409: "Conflit",
    413: "Contenu trop volumineux",
    415: "Type de contenu non pris en charge",
    422: "Données invalides",
    429: "Trop de requêtes",
    502: "Service distant en erreur",
    503: "Service momentanément indisponible",
    504: "Service distant trop lent",
}

# pydantic error types → a sentence a citizen can act on.
_FRENCH_REASONS = {
    "missing": "Ce champ est obligatoire.",
    "string_type": "Ce champ doit être un texte.",
    "string_too_short": "Ce texte est trop court (au moins {min_length} caractère(s)).",
    "string_too_long": "Ce texte est trop long (au plus {max_length} caractères).",
    "string_too_short_trimmed": "Ce texte est trop court une fois retirés les espaces du début "
    "et de la fin (au moins {min_length} caractère(s) visible(s)).",
    "string_pattern_mismatch": "Ce texte n'a pas le format attendu.",
    "literal_error": "Valeur non reconnue ; valeurs possibles : {expected}.",
    "enum": "Valeur non reconnue ; valeurs possibles : {expected}.",
    "value_error": "{msg}",
    "assertion_error": "{msg}",
    "int_type": "Ce champ doit être un nombre entier.",
    "int_parsing": "Ce champ doit être un nombre entier.",
    "float_type": "Ce champ doit être un nombre.",
    "float_parsing": "Ce champ doit être un nombre.",
    "bool_type": "Ce champ doit valoir true ou false.",
    "bool_parsing": "Ce champ doit valoir true ou false.",
    "dict_type": "Ce champ doit être un objet JSON.",
    "model_type": "Ce champ doit être un objet JSON.",
    "model_attributes_type": "Ce champ doit être un objet JSON.",
    "list_type": "Ce champ doit être une liste.",
    "too_long": "Cette liste est trop longue (au plus {max_length} éléments).",
    "too_short": "Cette liste est trop courte (au moins {min_length} élément(s)).",
    "extra_forbidden": "Ce champ n'est pas attendu.",
    "greater_than_equal": "La valeur doit être supérieure ou égale à {ge}.",
    "less_than_equal": "La valeur doit être inférieure ou égale à {le}.",
    "greater_than": "La valeur doit être supérieure à {gt}.",
    "less_than": "La valeur doit être inférieure à {lt}.",
    "uuid_parsing": "Identifiant invalide.",
    "uuid_type": "Identifiant invalide.",
    "date_parsing": "Date invalide (format attendu : AAAA-MM-JJ).",
    "date_from_datetime_parsing": "Date invalide (format attendu : AAAA-MM-JJ).",
    "datetime_parsing": "Date et heure invalides (format RFC 3339 attendu).",
    "datetime_from_date_parsing": "Date et heure invalides (format RFC 3339 attendu).",
    "timezone_aware": "La date et l'heure doivent préciser leur fuseau horaire.",
    "value_error.email": "Adresse électronique invalide.",
    "string_control": "Ce texte contient un caractère de contrôle ou invisible qui change "
    "sa présentation (saut de ligne ou tabulation dans un texte d'une seule ligne, comme un "
    "nom ; inversion du sens de lecture) : retirez-le.",
    "string_nul": "Ce texte contient un caractère nul (U+0000), qui ne peut pas être "
    "enregistré : retirez-le.",
    "url_parsing": "Adresse web invalide : indiquez une adresse complète, commençant par https://.",
    "url_scheme": "Adresse web invalide : elle doit commencer par https:// (ou http://).",
    "url_too_long": "Cette adresse web est trop longue (au plus {max_length} caractères).",
    "url_type": "Ce champ doit être une adresse web (texte).",
    "date_type": "Date invalide (format attendu : AAAA-MM-JJ).",
    "date_from_datetime_inexact": "Indiquez une date seule (format AAAA-MM-JJ), sans heure.",
    "datetime_type": "Date et heure invalides (format RFC 3339 attendu).",
    "int_from_float": "Ce champ doit être un nombre entier.",
    "finite_number": "Ce nombre est trop grand.",
    "string_sub_type": "Ce champ doit être un texte.",
    "union_tag_invalid": "Valeur non reconnue.",
}


def french_reason(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    template = _FRENCH_REASONS.get(kind)
    ctx = dict(error.get("ctx") or {})
    if kind in {"value_error", "assertion_error"}:
        message = str(ctx.get("error", error.get("msg", "")))
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        return message or "Valeur invalide."
    if kind == "field_error":
        return str(error.get("msg", "")) or "Valeur invalide."
    if template is None:
        return "Valeur invalide."
    if "expected" in ctx:  # pydantic's list of allowed values: "'a', 'b' or 'c'"
        head, _, last = str(ctx["expected"]).rpartition(" or ")
        ctx["expected"] = f"{head} ou {last}" if head else last
    try:
        return template.format(msg=error.get("msg", ""), **ctx)
    except (KeyError, IndexError):
        return "Valeur invalide."


def _error_field(error: dict[str, Any]) -> str:
    location = tuple(error.get("loc", ()))
    if error.get("type") == "field_error":  # a check across fields names the one to fix
        location += (error["ctx"]["field"],)
    return _field_name(location)


def _field_name(location: tuple[Any, ...]) -> str:
    """`rules[0].conditions.fields[1]`: FastAPI's location, less where it came from."""
    parts = list(location)
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "corps"


_JSON_SYNTAX = (
    "Le corps de la requête n'est pas un JSON valide. Vérifiez sa syntaxe "
    "(guillemets, virgules, accolades)."
)
# What the JSON reader refuses beyond syntax (`jsonbody.loads`), said to the sender.
_JSON_DETAILS = {
    LONE_SURROGATE: "Le corps de la requête contient, à l'octet {where}, un caractère échappé "
    "invalide : une moitié de paire de substitution UTF-16 (\\uD800 à \\uDFFF) sans "
    "l'autre. Corrigez le texte ou envoyez-le en UTF-8 sans échappement.",
    NOT_A_NUMBER: "Le corps de la requête contient NaN, Infinity ou -Infinity, ou un nombre "
    "trop grand pour être représenté (comme 1e400), qui ne sont pas des nombres "
    "utilisables. Envoyez un nombre, ou null pour une valeur inconnue.",
    TOO_LONG_NUMBER: "Le corps de la requête contient un nombre entier de plus de 4 300 "
    "chiffres. Envoyez-le comme texte s'il s'agit d'un identifiant.",
    NOT_UNICODE: "Le corps de la requête n'est pas un texte UTF-8 valide (octet {where}). "
    "Enregistrez-le ou envoyez-le encodé en UTF-8.",
    TOO_DEEP: "Le corps de la requête imbrique trop de listes ou d'objets les uns dans "
    "les autres. Simplifiez sa structure.",
}


_NOT_SENT_AS_JSON = (
    "Le corps de la requête doit être un objet JSON, envoyé avec l'en-tête "
    "Content-Type: application/json."
)


def validation_problem(errors: Sequence[Any]) -> Problem:
    """The 422 (or 400 for malformed JSON) for pydantic's `errors()`, fields named and
    explained in French: a request's body, or what another administration signed."""
    malformed = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if malformed is not None:
        error = str((malformed.get("ctx") or {}).get("error", ""))
        detail = _JSON_DETAILS.get(error, _JSON_SYNTAX).format(where=malformed["loc"][-1])
        return Problem(400, "malformed-json", "JSON mal formé", detail)
    params = [
        InvalidParam(
            name=_error_field(e),
            # Bytes where an object was due: a body sent under another type than JSON's.
            reason=_NOT_SENT_AS_JSON
            if tuple(e.get("loc", ())) == ("body",) and isinstance(e.get("input"), bytes)
            else french_reason(e),
        )
        for e in errors
    ]
    names = ", ".join(dict.fromkeys(p.name for p in params))
    return Problem(
        422,
        "validation-error",
        "Données invalides",
        f"Certains champs sont absents ou incorrects : {names}. Corrigez-les puis "
        "renvoyez la demande.",
        invalid_params=params,
    )


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def document_body_problems(schema: dict[str, Any]) -> None:
    """In an OpenAPI document: every operation reading a body may answer 400, 413 and 422."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                responses = operation.setdefault("responses", {})
                for status in (400, 413, 422):
                    responses.setdefault(
                        str(status),
                        {
                            "description": _STATUS_TITLES[status],
                            "content": {
                                PROBLEM_MEDIA_TYPE: {
                                    "schema": {"$ref": "#/components/schemas/ProblemDetails"}
                                }
                            },
                        },
                    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return exc.response(instance=request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_problem(exc.errors()).response(instance=request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc, _BodyTooLarge):
            return exc.problem.response(instance=request.url.path)
        detail = {
            # Only the frameworks raise these, in English: a form or body they could not read.
            400: "Le corps de la requête n'a pas pu être lu : vérifiez qu'il est au format "
            "annoncé par son en-tête Content-Type (JSON, formulaire) et qu'il est complet.",
            404: "Aucune ressource ne correspond à cette adresse.",
            405: "Cette méthode HTTP n'est pas acceptée à cette adresse.",
        }.get(exc.status_code, str(exc.detail))
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; list them all.
            headers = {"Allow": ", ".join(_allowed_methods(request))}
        return Problem(
            exc.status_code,
            f"http-{exc.status_code}",
            _STATUS_TITLES.get(exc.status_code, "Erreur"),
            detail,
            headers=headers,
        ).response(instance=request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return Problem(
            500,
            "internal-error",
            "Erreur interne",
            "Une erreur inattendue est survenue ; votre demande n'a pas été "
            "perdue si un accusé vous a été remis. Réessayez dans quelques instants.",
        ).response(instance=request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def route_path(scope: Scope) -> str:
    """The path within the app (under a mount, the app's own part)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _nul_in_address(scope: Scope) -> Problem | None:
    """A NUL character (%00) in the path or a query parameter: named, as a body's field."""
    if "\x00" in scope["path"]:
        name = "chemin"
    elif b"%00" in scope["query_string"]:
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        name = next((k for k, v in query if "\x00" in k + v), "requête").replace("\x00", "")
    else:
        return None
    return Problem(
        422,
        "nul-character",
        "Caractère nul dans l'adresse",
        "L'adresse demandée contient un caractère nul (%00), qui ne peut être enregistré "
        "ni rien désigner : retirez-le.",
        [InvalidParam(name=name or "requête", reason=_FRENCH_REASONS["string_nul"])],
    )


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` from Content-Length, or as soon as the stream passes
    it; and a NUL character in the path or query, which no text column can keep."""

    def __init__(self, app: ASGIApp, max_bytes: int, own_errors: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.own_errors = own_errors  # path prefixes that check their own addresses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nul = _nul_in_address(scope)
        if nul is not None and not route_path(scope).startswith(self.own_errors):
            await self._refuse(scope, receive, send, nul)
            return
        declared = next(
            (value for name, value in scope.get("headers") or () if name == b"content-length"),
            None,
        )
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await self._refuse(
                    scope,
                    receive,
                    send,
                    Problem(
                        400,
                        "content-length-invalid",
                        "En-tête Content-Length invalide",
                        "L'en-tête Content-Length doit être un nombre d'octets.",
                    ),
                )
                return
            if too_big:
                await self._refuse(scope, receive, send, _too_large(self.max_bytes))
                return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException, so FastAPI's body parsing lets it through as is.
                    raise _BodyTooLarge(_too_large(self.max_bytes))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge as exc:
            if not started:
                await self._refuse(scope, receive, send, exc.problem)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, problem: Problem) -> None:
        await problem.response(instance=scope.get("path"))(scope, receive, send)


def _too_large(max_bytes: int) -> Problem:
    return Problem(
        413,
        "payload-too-large",
        "Contenu trop volumineux",
        f"Le corps de la requête dépasse la taille maximale de {max_bytes // 1024} Kio. "
        "Allégez la demande (les pièces jointes se déposent séparément).",
    )


class _BodyTooLarge(StarletteHTTPException):
    def __init__(self, problem: Problem) -> None:
        super().__init__(413, problem.detail)
        self.problem = problem
