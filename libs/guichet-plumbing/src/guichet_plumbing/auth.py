"""Who is calling, and may they: one model for every service.

A caller is a `Principal`: an anonymous citizen, a citizen identified by
FranceConnect, an agent of a collectivité (roles scoped to a tenant and to
services), or another administration's system (OAuth 2 client, scopes). Guichet
issues its own bearer tokens (JWT, ES256, verifiable against a published JWKS,
keys rotatable) once a login or a client-credentials grant succeeded; every
service verifies them locally.

Every route declares who may call it with one `Policy` in its `dependencies`
(`PUBLIC`, `allow(...)`): a test walks the routes and fails on any without.
The policy checks the kind, the roles or scopes, and that a `tenant` named in
the query is the caller's own; object-level checks (which service's file, which
citizen's request: R21) live in each service layer, through `Principal`'s
methods.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Depends, FastAPI, Request
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OctKey
from joserfc.jwt import JWTClaimsRegistry

from guichet_plumbing.problems import PROBLEM_MEDIA_TYPE, Problem
from guichet_plumbing.ratelimit import WRITE_METHODS, WriteLimiter

ALGORITHM = "ES256"
SEAL_ALGORITHM = "HS256"
AUDIENCE = "guichet"


class Kind(StrEnum):
    anonymous = "anonymous"
    citizen = "citizen"
    agent = "agent"
    client = "client"
    # The service itself (consumers, scheduler, service-layer tests): never from a token.
    system = "system"


class Role(StrEnum):
    """An agent's roles, each held in one tenant (and, for some, for some services)."""

    counter_agent = "counter_agent"  # accueil : saisie pour le compte (R22)
    case_handler = "case_handler"  # instructeur d'un ou plusieurs services
    service_head = "service_head"  # chef de service : ses services, et leurs réglages
    administrator = "administrator"  # paramétrage de la collectivité, sans accès aux dossiers
    dpo = "dpo"  # délégué à la protection des données : journaux d'accès
    mediator = "mediator"  # aidant (France Services, travailleur social) : mandats (R25)


#: What other administrations' systems may be allowed (OAuth 2 client credentials).
SCOPES = {
    "transfers:write": "transmettre des demandes reçues à tort (R12)",
    "open311:write": "déposer des signalements (Open311)",
}

#: Roles that open the files of the services an agent is assigned to (R21).
FILE_ROLES = frozenset({Role.case_handler, Role.service_head})


@dataclass(frozen=True)
class Principal:
    kind: Kind
    subject: str = ""
    tenant: str | None = None
    roles: frozenset[Role] = frozenset()
    services: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    # R25: the citizen a mediator or legal representative acts for (by mandate).
    acting_for: str | None = None
    name: str | None = None
    # A citizen's FranceConnect identity pivot (R14), carried to prefill requests.
    identity: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_anonymous(self) -> bool:
        return self.kind is Kind.anonymous

    def label(self) -> str:
        """Who acted, for history and audit lines: both people when acting by mandate."""
        if self.acting_for:
            return f"{self.kind}:{self.subject} pour {self.acting_for}"
        return f"{self.kind}:{self.subject}" if self.subject else str(self.kind)

    def in_tenant(self, tenant: str) -> bool:
        return self.kind in (Kind.agent, Kind.client) and self.tenant == tenant

    def outside(self, tenant: str) -> bool:
        """An agent or a client of another collectivité: each acts for its own only."""
        return self.kind in (Kind.agent, Kind.client) and self.tenant != tenant

    def has_role(self, tenant: str, *roles: Role) -> bool:
        return self.kind is Kind.agent and self.tenant == tenant and bool(self.roles & set(roles))

    def handles(self, tenant: str, service: str | None) -> bool:
        """A case handler or service head of this service (R21: nothing beyond)."""
        return (
            service is not None
            and self.has_role(tenant, *FILE_ROLES)
            and (service in self.services)
        )

    def has_scope(self, tenant: str, scope: str) -> bool:
        return self.kind is Kind.client and self.tenant == tenant and scope in self.scopes


ANONYMOUS = Principal(Kind.anonymous)
SYSTEM = Principal(Kind.system, subject="guichet")


def pseudonym(secret: bytes, tenant: str, family: str, subject: str) -> str:
    """R15: one identifier per public service; the FranceConnect `sub` is never stored.

    Two services' identifiers of one citizen cannot be linked without the secret.
    """
    message = "\x1f".join((tenant, family, subject)).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def proof_digest(salt: str, value: str) -> str:
    """A follow-up proof (e-mail or phone given at submission), stored only as a salted hash."""
    normalised = value.strip().lower()
    if "@" not in normalised:
        normalised = "".join(c for c in normalised if c.isdigit() or c == "+")
    return hashlib.sha256(f"{salt}\x1f{normalised}".encode()).hexdigest()


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _header(algorithm: str, kid: str | None) -> bytes:
    header = {"alg": algorithm, "kid": kid, "typ": "JWT"}
    return _b64(json.dumps(header, separators=(",", ":")).encode())


def _sealing_secret(key: ECKey) -> bytes:
    """The MAC key of sealed claims, derived from one private key of the set."""
    private = key.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    scalar = private.private_numbers().private_value.to_bytes(32, "big")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"guichet sealed claims")
    return hkdf.derive(scalar)


def same_digest(candidate: str, digests: Iterable[str]) -> bool:
    # Compare every stored digest in constant time, so timing tells nothing.
    return any([hmac.compare_digest(candidate, d) for d in digests])


# -- tokens -------------------------------------------------------------------------------------

# The development key: fixed, so that the four services of `make run` (or of
# `make run-distributed`) trust each other's tokens with no setup. Refused in production.
_DEVELOPMENT_SEED = b"guichet development token key: never in production"


def development_keys() -> str:
    scalar = int.from_bytes(hashlib.sha256(_DEVELOPMENT_SEED).digest(), "big")
    private = ec.derive_private_key(scalar, ec.SECP256R1())
    key = ECKey.import_key(private)
    return json.dumps({"keys": [key.as_dict(private=True, kid="dev-1", alg=ALGORITHM)]})


def generate_keys(previous: str | None = None) -> str:
    """A new current key first, the previous ones after (still verifying): key rotation."""
    key = ECKey.generate_key("P-256", private=True)
    kid = f"{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
    keys = [key.as_dict(private=True, kid=kid, alg=ALGORITHM)]
    if previous:
        keys += json.loads(previous)["keys"]
    return json.dumps({"keys": keys})


class TokenKeys:
    """Issues and verifies Guichet's bearer tokens with a JWK set of EC P-256 private keys.

    The first key signs; all verify, so a rotated-out key keeps its tokens valid
    until they expire (then it can be dropped from the set).

    Bearer tokens are ES256: every service verifies them with the public keys alone.
    Sealed claims (`seal`: follow-up links, login state) are read back only by the
    service that wrote them, so they are HS256 under a key derived from each private
    key (HKDF): a MAC costs a fraction of a signature, and the key set, its rotation
    included, stays the one secret to manage.
    """

    def __init__(self, private_jwks: str, issuer: str = "guichet") -> None:
        data = json.loads(private_jwks)
        self._keys = [ECKey.import_key(k) for k in data["keys"]]
        if not self._keys or not all(k.is_private for k in self._keys):
            raise ValueError("the token key set needs at least one private EC key")
        self._set = KeySet(self._keys)  # type: ignore[arg-type]
        self.issuer = issuer
        signer = self._keys[0].private_key
        assert isinstance(signer, ec.EllipticCurvePrivateKey)
        self._signer = signer
        self._header = _header(ALGORITHM, self._keys[0].kid)
        sealing = [
            OctKey.import_key(_sealing_secret(k), {"kid": k.kid or k.thumbprint()})
            for k in self._keys
        ]
        self._sealing_set = KeySet(sealing)  # type: ignore[arg-type]
        self._sealing_secret = sealing[0].raw_value
        self._sealing_header = _header(SEAL_ALGORITHM, sealing[0].kid)

    def public_jwks(self) -> dict[str, Any]:
        return {
            "keys": [dict(k.as_dict(private=False, alg=ALGORITHM, use="sig")) for k in self._keys]
        }

    def issue(self, principal: Principal, ttl: timedelta, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": principal.subject,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": str(uuid.uuid4()),
            "kind": principal.kind.value,
        }
        if principal.tenant is not None:
            claims["tenant"] = principal.tenant
        if principal.roles:
            claims["roles"] = sorted(principal.roles)
        if principal.services:
            claims["services"] = sorted(principal.services)
        if principal.scopes:
            claims["scope"] = " ".join(sorted(principal.scopes))
        if principal.acting_for:
            claims["acting_for"] = principal.acting_for
        if principal.name:
            claims["name"] = principal.name
        if principal.identity:
            claims["identity"] = principal.identity
        return self._encode(claims)

    def _encode(self, claims: dict[str, Any]) -> str:
        """An ES256 JWT in compact form (RFC 7515/7519), written out: joserfc's generic
        path costs as much as the signature. Tokens are still read by joserfc (`verify`)."""
        signing_input = (
            self._header + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        r, s = decode_dss_signature(self._signer.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return (signing_input + b"." + _b64(signature)).decode("ascii")

    def seal(
        self, audience: str, claims: dict[str, Any], ttl: timedelta, now: datetime | None = None
    ) -> str:
        """Sealed (MAC), expiring claims for one purpose (`audience`): links, login state."""
        now = now or datetime.now(UTC)
        body = {
            **claims,
            "iss": self.issuer,
            "aud": audience,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        # An HS256 JWT written out (a follow-up link is sealed at every submission);
        # `unseal` reads it with joserfc.
        signing_input = self._sealing_header + b"." + _b64(orjson.dumps(body))
        mac = hmac.new(self._sealing_secret, signing_input, hashlib.sha256).digest()
        return (signing_input + b"." + _b64(mac)).decode("ascii")

    def unseal(
        self, audience: str, token: str, now: datetime | None = None
    ) -> dict[str, Any] | None:
        """The claims `seal` signed for `audience`, unless forged, expired or for another use."""
        try:
            try:
                decoded = jwt.decode(token, self._sealing_set, algorithms=[SEAL_ALGORITHM])
            except JoseError:
                # Sealed with ES256 before 30 November 2026: follow-up links live 90 days.
                decoded = jwt.decode(token, self._set, algorithms=[ALGORITHM])
            JWTClaimsRegistry(
                now=int((now or datetime.now(UTC)).timestamp()),
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": audience},
                exp={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError, KeyError, TypeError):
            return None
        return dict(decoded.claims)

    def issue_link(self, resource: str, ttl: timedelta, now: datetime | None = None) -> str:
        """A signed, expiring capability for one resource (a citizen's follow-up link)."""
        return self.seal(LINK_AUDIENCE, {"sub": resource}, ttl, now)

    def verify_link(self, token: str, resource: str, now: datetime | None = None) -> bool:
        claims = self.unseal(LINK_AUDIENCE, token, now)
        return claims is not None and claims.get("sub") == resource

    def verify(self, token: str, now: datetime | None = None) -> Principal | None:
        """The principal a token names, or None: never raises on hostile input."""
        try:
            decoded = jwt.decode(token, self._set, algorithms=[ALGORITHM])
            JWTClaimsRegistry(
                now=int((now or datetime.now(UTC)).timestamp()),
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": AUDIENCE},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(decoded.claims)
            claims = decoded.claims
            kind = Kind(claims["kind"])
            if kind in (Kind.anonymous, Kind.system):
                return None
            return Principal(
                kind=kind,
                subject=str(claims["sub"]),
                tenant=claims.get("tenant"),
                roles=frozenset(Role(r) for r in claims.get("roles", [])),
                services=frozenset(str(s) for s in claims.get("services", [])),
                scopes=frozenset(str(claims.get("scope", "")).split()),
                acting_for=claims.get("acting_for"),
                name=claims.get("name"),
                identity=dict(claims.get("identity") or {}),
            )
        except (JoseError, ValueError, KeyError, TypeError):
            return None


LINK_AUDIENCE = "guichet-link"


# -- problems -----------------------------------------------------------------------------------


def unauthenticated(detail: str | None = None) -> Problem:
    return Problem(
        401,
        "unauthenticated",
        "Authentification requise",
        detail
        or "Cette action demande d'être connecté : présentez un jeton (en-tête "
        "Authorization: Bearer …) obtenu à la connexion.",
        headers={"WWW-Authenticate": 'Bearer realm="guichet"'},
    )


def forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", "Accès refusé", detail)


def foreign_tenant(tenant: str) -> Problem:
    return forbidden(
        f"Vous n'agissez pas pour la collectivité « {tenant} » : seules les données de "
        "votre collectivité vous sont accessibles."
    )


# -- policies -----------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="Jeton Guichet (connexion ou client OAuth 2).")


def _keys(request: Request) -> TokenKeys:
    keys: TokenKeys = request.app.state.token_keys
    return keys


def _principal_from(request: Request, authorization: str | None) -> Principal:
    if not authorization:
        return ANONYMOUS
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("L'en-tête Authorization doit être de la forme « Bearer <jeton> ».")
    principal = _keys(request).verify(token.strip())
    if principal is None:
        raise unauthenticated("Jeton invalide ou expiré : reconnectez-vous.")
    return principal


class Policy:
    """Who may call a route: declared once per route, in `dependencies=[...]`."""

    def __init__(
        self,
        name: str,
        *,
        anonymous: bool = False,
        citizens: bool = False,
        roles: Iterable[Role] = (),
        scopes: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.anonymous = anonymous
        self.citizens = citizens or anonymous
        self.roles = frozenset(roles)
        self.scopes = frozenset(scopes)
        self.anyone = anonymous and not self.roles and not self.scopes

    def admits(self, principal: Principal) -> bool:
        if self.anyone:
            return True
        match principal.kind:
            case Kind.anonymous:
                return self.anonymous
            case Kind.citizen:
                return self.citizens
            case Kind.agent:
                return bool(principal.roles & self.roles)
            case Kind.client:
                return bool(principal.scopes & self.scopes)
        return False

    async def check(self, request: Request, principal: Principal) -> Principal:
        if not self.admits(principal):
            if principal.is_anonymous:
                raise unauthenticated()
            raise forbidden(
                "Votre profil ne permet pas cette action. Adressez-vous à "
                "l'administrateur de votre collectivité si elle relève de votre mission."
            )
        if not self.anonymous and request.scope.get("query_string"):
            # Parsed only when it may matter: open routes (every submission) check no
            # tenant, and most calls carry no query.
            tenant = request.query_params.get("tenant")
            if tenant is not None and principal.outside(tenant):
                raise foreign_tenant(tenant)
        mandate = request.headers.get("x-mandate")
        if mandate and principal.kind in (Kind.citizen, Kind.agent):
            # R25: acting for someone else; the service holding the mandate checks it.
            principal = replace(principal, acting_for=mandate[:200])
        if request.method in WRITE_METHODS:
            limiter: WriteLimiter = request.app.state.write_limiter
            source = request.client.host if request.client else "inconnue"
            await limiter.check(f"source:{source}" if principal.is_anonymous else principal.label())
        request.state.principal = principal
        return principal

    def describe(self) -> str:
        if self.anyone:
            return "public"
        parts = []
        if self.anonymous:
            parts.append("anonymous")
        if self.citizens:
            parts.append("citizen")
        parts += sorted(f"agent:{r}" for r in self.roles)
        parts += sorted(f"client:{s}" for s in self.scopes)
        return ", ".join(parts)


class _OpenPolicy(Policy):
    """Anonymous callers admitted: the bearer is optional, so not declared as security."""

    async def __call__(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        return await self.check(request, _principal_from(request, header))


def open_policy(depends: DependsParam) -> Callable[[Request], Awaitable[Principal]]:
    """The policy `allow(..., anonymous=True)` declared, to run outside FastAPI (a lane)."""
    policy = depends.dependency
    if not isinstance(policy, _OpenPolicy):
        raise TypeError("only a policy admitting anonymous callers reads the request alone")
    return policy.__call__


class _ClosedPolicy(Policy):
    async def __call__(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        header = f"Bearer {credentials.credentials}" if credentials else None
        return await self.check(request, _principal_from(request, header))


def allow(
    name: str,
    *,
    anonymous: bool = False,
    citizens: bool = False,
    roles: Iterable[Role] = (),
    scopes: Iterable[str] = (),
) -> DependsParam:
    """A route's policy, to put in `dependencies=[...]`; `name` says it in the OpenAPI."""
    cls = _OpenPolicy if anonymous else _ClosedPolicy
    policy = cls(name, anonymous=anonymous, citizens=citizens, roles=roles, scopes=scopes)
    depends: DependsParam = Depends(policy)
    return depends


#: Anyone, anonymous included (the catalogue, following with a proof, health).
PUBLIC = allow("public", anonymous=True)


# Dependencies are coroutines, even with nothing to await: FastAPI runs a plain `def` in
# its thread pool, a thread hop on every request for a dictionary lookup.


async def current_principal(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        # A route reading the caller without declaring a policy: a programming error.
        raise RuntimeError(f"no access policy ran for {request.url.path}")
    return principal


async def current_agent(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if principal.kind is not Kind.agent:
        raise forbidden("Cette action est réservée aux agents de la collectivité.")
    return principal


async def current_citizen(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if principal.kind is not Kind.citizen:
        raise unauthenticated("Connectez-vous avec FranceConnect pour cette action.")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
CurrentAgent = Annotated[Principal, Depends(current_agent)]
CurrentCitizen = Annotated[Principal, Depends(current_citizen)]


def api_routes(app: FastAPI) -> Iterator[tuple[str, str, Any]]:
    """(method, path, route context) for every API route of `app`, included routers' too."""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            for method in sorted(context.methods or ()):
                yield method, str(context.path_format), context


def route_policies(app: FastAPI) -> Iterator[tuple[str, str, Policy | None]]:
    """(method, path, policy) for every API route of `app`, included routers' too."""
    for method, path, context in api_routes(app):
        policy = next(
            (d.call for d in context.dependant.dependencies if isinstance(d.call, Policy)), None
        )
        yield method, path, policy


def routes_without_policy(app: FastAPI) -> list[str]:
    return [f"{method} {path}" for method, path, policy in route_policies(app) if policy is None]


_DESCRIPTIONS = {401: "Authentification requise", 403: "Accès refusé", 429: "Trop de requêtes"}


def document_policies(app: FastAPI, schema: dict[str, Any]) -> None:
    """In the OpenAPI: who may call each operation (`x-guichet-access`), and 401/403."""
    for method, path, policy in route_policies(app):
        operation = schema.get("paths", {}).get(path, {}).get(method.lower())
        if policy is None or operation is None:
            continue
        operation["x-guichet-access"] = policy.describe()
        responses = operation.setdefault("responses", {})
        # An invalid token is refused even where none is needed; writes are rate-limited.
        statuses = [401] if policy.anyone else [401, 403]
        if method in WRITE_METHODS:
            statuses.append(429)
        for status in statuses:
            responses.setdefault(
                str(status),
                {
                    "description": _DESCRIPTIONS[status],
                    "content": {
                        PROBLEM_MEDIA_TYPE: {
                            "schema": {"$ref": "#/components/schemas/ProblemDetails"}
                        }
                    },
                },
            )
