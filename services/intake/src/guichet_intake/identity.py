"""Who may act, as intake knows it: agents' and citizens' OpenID Connect logins, other
administrations' OAuth 2 clients, the demo logins of `make run`.

Every login ends with a Guichet token (see `guichet_plumbing.auth`) that all services
verify on their own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_intake import repository
from guichet_intake.schemas import (
    AgentAccountWrite,
    Applicant,
    ClientCreate,
    ClientCredentials,
    MandateCreate,
    MandatePublic,
    Me,
    PivotIdentity,
    RepresentativeIdentity,
    TokenAnswer,
)
from guichet_intake.seed import DEMO_LOGINS
from guichet_intake.settings import IntakeSettings
from guichet_plumbing.auth import Kind, Principal, Role, TokenKeys, pseudonym
from guichet_plumbing.db import Database
from guichet_plumbing.oidc import LoginRefused, OidcProvider, ProviderConfig
from guichet_plumbing.problems import InvalidParam, Problem, unknown_tenant

LOGIN_AUDIENCE = "guichet-login"
LOGIN_MINUTES = 10
# R14: what FranceConnect's `identite_pivot` scope gives, as Guichet keeps it.
PIVOT_CLAIMS = ("family_name", "given_name", "gender", "birthdate", "birthplace", "birthcountry")


def _secret_hash(secret: str) -> str:
    # Client secrets are 256 random bits: a plain digest is enough, no password stretching.
    return hashlib.sha256(secret.encode()).hexdigest()


def login_refused(detail: str) -> Problem:
    return Problem(401, "login-refused", "Connexion refusée", detail)


class Identity:
    def __init__(
        self,
        db: Database,
        settings: IntakeSettings,
        token_keys: TokenKeys,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.keys = token_keys
        self.ttl = timedelta(minutes=settings.auth_token_minutes)
        self.providers: dict[str, OidcProvider] = {}
        base = settings.public_url
        if settings.agent_oidc_issuer:
            self.providers["agents"] = OidcProvider(
                ProviderConfig(
                    issuer=settings.agent_oidc_issuer,
                    client_id=settings.agent_oidc_client_id,
                    client_secret=_secret(settings.agent_oidc_client_secret),
                    redirect_uri=f"{base}/v1/auth/agents/callback",
                    scope="openid email profile",
                ),
                http,
            )
        if settings.franceconnect_issuer:
            self.providers["franceconnect"] = OidcProvider(
                ProviderConfig(
                    issuer=settings.franceconnect_issuer,
                    client_id=settings.franceconnect_client_id,
                    client_secret=_secret(settings.franceconnect_client_secret),
                    redirect_uri=f"{base}/v1/auth/franceconnect/callback",
                    scope="openid identite_pivot email",
                    acr_values="eidas1",
                    post_logout_redirect_uri=settings.franceconnect_post_logout_redirect_uri,
                ),
                http,
            )

    def _answer(self, principal: Principal, **extra: Any) -> TokenAnswer:
        return TokenAnswer(
            access_token=self.keys.issue(principal, self.ttl),
            expires_in=int(self.ttl.total_seconds()),
            scope=" ".join(sorted(principal.scopes)) or None,
            **extra,
        )

    # -- demo logins (development only) -------------------------------------------------------

    def demo(self, login: str) -> TokenAnswer:
        principal = DEMO_LOGINS.get(login)
        if not self.settings.demo_logins or principal is None:
            raise Problem(
                404,
                "demo-login-unknown",
                "Connexion de démonstration indisponible",
                "Les connexions de démonstration n'existent qu'en développement ; connues : "
                + ", ".join(DEMO_LOGINS)
                + ".",
            )
        return self._answer(principal)

    # -- OpenID Connect logins ----------------------------------------------------------------

    def _provider(self, name: str) -> OidcProvider:
        provider = self.providers.get(name)
        if provider is None:
            raise Problem(
                404,
                "login-unavailable",
                "Connexion non configurée",
                f"La connexion « {name} » n'est pas configurée sur ce guichet.",
            )
        return provider

    async def start_login(self, name: str, tenant: str | None) -> tuple[str, str]:
        """The provider's authorisation URL, and the sealed state to keep in a cookie."""
        provider = self._provider(name)
        if name == "agents":
            if tenant is None:
                raise Problem(
                    422,
                    "validation-error",
                    "Données invalides",
                    "Précisez la collectivité de l'agent (paramètre tenant).",
                    [InvalidParam(name="tenant", reason="Ce champ est obligatoire.")],
                )
            async with self.db.sessions() as session:
                if await repository.get_tenant(session, tenant) is None:
                    raise unknown_tenant(tenant)
        try:
            login = await provider.start()
        except (httpx.HTTPError, LoginRefused) as exc:
            raise _provider_down(name) from exc
        sealed = self.keys.seal(
            LOGIN_AUDIENCE,
            {"state": login.state, "nonce": login.nonce, "provider": name, "tenant": tenant},
            timedelta(minutes=LOGIN_MINUTES),
        )
        return login.url, sealed

    async def finish_login(
        self, name: str, code: str, state: str, sealed: str | None
    ) -> TokenAnswer:
        provider = self._provider(name)
        kept = self.keys.unseal(LOGIN_AUDIENCE, sealed) if sealed else None
        if (
            kept is None
            or kept.get("provider") != name
            or not hmac.compare_digest(str(kept.get("state")), state)
        ):
            # Not the login this browser started (CSRF), or started too long ago.
            raise login_refused(
                "Cette connexion n'a pas été demandée depuis ce navigateur, ou a "
                "expiré : recommencez."
            )
        try:
            claims, id_token, access_token = await provider.finish(code, str(kept["nonce"]))
        except LoginRefused as exc:
            raise login_refused(
                "Le fournisseur d'identité n'a pas confirmé cette connexion : recommencez."
            ) from exc
        except httpx.HTTPError as exc:
            raise _provider_down(name) from exc
        if name == "agents":
            return await self._agent_login(str(kept["tenant"]), claims)
        identity = {k: claims[k] for k in (*PIVOT_CLAIMS, "email") if k in claims}
        if access_token and not all(k in identity for k in PIVOT_CLAIMS):
            info = await provider.userinfo(access_token)
            identity |= {k: info[k] for k in (*PIVOT_CLAIMS, "email") if k in info}
        names = " ".join(str(identity[k]) for k in ("given_name", "family_name") if k in identity)
        citizen = Principal(
            Kind.citizen, subject=str(claims["sub"]), name=names or None, identity=identity
        )
        return self._answer(citizen, id_token_hint=id_token)

    async def _agent_login(self, tenant: str, claims: dict[str, Any]) -> TokenAnswer:
        async with self.db.sessions() as session:
            account = await repository.get_agent_account(session, tenant, str(claims["sub"]))
        if account is None:
            raise Problem(
                403,
                "agent-not-enabled",
                "Agent non habilité",
                "Votre identité est reconnue, mais aucun rôle ne vous est attribué dans cette "
                "collectivité. Demandez-le à son administrateur.",
            )
        agent = Principal(
            Kind.agent,
            subject=account.subject,
            tenant=tenant,
            roles=frozenset(Role(r) for r in account.roles),
            services=frozenset(account.services),
            name=account.name,
        )
        return self._answer(agent)

    async def logout_url(self, id_token_hint: str) -> str:
        """FranceConnect's end-session URL: the citizen leaves FranceConnect too."""
        provider = self._provider("franceconnect")
        try:
            return await provider.logout_url(id_token_hint, secrets.token_urlsafe(16))
        except (httpx.HTTPError, LoginRefused) as exc:
            raise _provider_down("franceconnect") from exc

    @staticmethod
    def me(citizen: Principal) -> Me:
        """R14: the pivot identity, and the applicant it prefills."""
        identity = PivotIdentity.model_validate(citizen.identity)
        applicant = Applicant(
            name=citizen.name or "Usager FranceConnect",
            family_name=identity.family_name,
            given_name=identity.given_name,
            email=identity.email,
        )
        return Me(identity=identity, applicant=applicant)

    # -- mandates (R25) ----------------------------------------------------------------------

    async def grant_mandate(self, citizen: Principal, body: MandateCreate) -> MandatePublic:
        """The citizen, logged in, records who may act for them (aidant, legal representative)."""
        secret = self.settings.pseudonym_key()
        now = datetime.now(UTC)
        if body.representative is not None:
            holder = representative_key(
                secret, body.tenant, body.representative.model_dump(mode="json")
            )
            label = _holder_label(body.representative)
        else:
            holder, label = body.agent, f"{body.agent} (aidant)"
        async with self.db.transaction() as session:
            if await repository.get_tenant(session, body.tenant) is None:
                raise unknown_tenant(body.tenant)
            families = [*await repository.service_codes(session, body.tenant), GENERAL_FAMILY]
            values = {
                "id": uuid.uuid4(),
                "tenant": body.tenant,
                "kind": body.kind,
                "holder": holder,
                "holder_label": label,
                "grantor_label": citizen.name or "usager",
                "owners": {f: pseudonym(secret, body.tenant, f, citizen.subject) for f in families},
                "granted_at": now,
                "expires_on": body.expires_on,
                "revoked_at": None,
            }
            await repository.insert_mandate(session, values)
        return _mandate_public(SimpleNamespace(**values))

    async def revoke_mandate(self, citizen: Principal, mandate_id: uuid.UUID) -> None:
        async with self.db.transaction() as session:
            row = await repository.get_mandate(session, mandate_id)
            mine = row is not None and row.owners.get(GENERAL_FAMILY) == pseudonym(
                self.settings.pseudonym_key(), row.tenant, GENERAL_FAMILY, citizen.subject
            )
            if row is None or not mine:
                raise Problem(
                    404,
                    "mandate-unknown",
                    "Mandat introuvable",
                    "Vous n'avez donné aucun mandat portant cet identifiant.",
                )
            await repository.revoke_mandate(session, mandate_id, datetime.now(UTC))

    # -- agents' accounts ----------------------------------------------------------------------

    async def put_agent(self, tenant: str, subject: str, body: AgentAccountWrite) -> bool:
        async with self.db.transaction() as session:
            if await repository.get_tenant(session, tenant) is None:
                raise unknown_tenant(tenant)
            return await repository.put_agent_account(
                session,
                {
                    "tenant": tenant,
                    "subject": subject,
                    "name": body.name,
                    "roles": sorted(set(body.roles)),
                    "services": sorted(set(body.services)),
                    "updated_at": datetime.now(UTC),
                },
            )

    # -- other administrations' systems (OAuth 2 client credentials) -------------------------

    async def create_client(self, tenant: str, body: ClientCreate) -> ClientCredentials:
        client_id = f"{tenant}-{secrets.token_hex(8)}"
        secret = secrets.token_urlsafe(32)
        async with self.db.transaction() as session:
            if await repository.get_tenant(session, tenant) is None:
                raise unknown_tenant(tenant)
            await repository.insert_api_client(
                session,
                {
                    "client_id": client_id,
                    "tenant": tenant,
                    "name": body.name,
                    "scopes": sorted(set(body.scopes)),
                    "secret_hash": _secret_hash(secret),
                    "created_at": datetime.now(UTC),
                },
            )
        return ClientCredentials(
            client_id=client_id, client_secret=secret, tenant=tenant, scopes=sorted(body.scopes)
        )

    async def rotate_client_secret(self, tenant: str, client_id: str) -> ClientCredentials:
        """A new secret; the previous one keeps working for the grace period, then dies."""
        secret = secrets.token_urlsafe(32)
        until = datetime.now(UTC) + timedelta(hours=self.settings.client_secret_grace_hours)
        async with self.db.transaction() as session:
            row = await repository.get_api_client(session, client_id, for_update=True)
            if row is None or row.tenant != tenant:
                raise _unknown_client()
            await repository.update_api_client(
                session,
                client_id,
                {
                    "secret_hash": _secret_hash(secret),
                    "previous_secret_hash": row.secret_hash,
                    "previous_valid_until": until,
                },
            )
        return ClientCredentials(
            client_id=client_id,
            client_secret=secret,
            tenant=tenant,
            scopes=list(row.scopes),
            previous_secret_valid_until=until,
        )

    async def client_token(
        self, client_id: str, client_secret: str, scope: str | None
    ) -> TokenAnswer:
        async with self.db.sessions() as session:
            row = await repository.get_api_client(session, client_id)
        presented = _secret_hash(client_secret)
        now = datetime.now(UTC)
        valid = row is not None and (
            hmac.compare_digest(presented, row.secret_hash)
            or (
                row.previous_secret_hash is not None
                and row.previous_valid_until is not None
                and row.previous_valid_until > now
                and hmac.compare_digest(presented, row.previous_secret_hash)
            )
        )
        if row is None or not valid:
            raise Problem(
                401,
                "invalid-client",
                "Client inconnu ou secret invalide",
                "L'identifiant ou le secret du client est incorrect (ou le secret a été "
                "renouvelé et l'ancien a expiré).",
                headers={"WWW-Authenticate": 'Basic realm="guichet"'},
            )
        granted = set(row.scopes)
        asked = set(scope.split()) if scope else granted
        if not asked <= granted:
            raise Problem(
                400,
                "invalid-scope",
                "Droits non accordés",
                "Ce client n'a pas les droits demandés : "
                + ", ".join(sorted(asked - granted))
                + f". Droits accordés : {', '.join(sorted(granted))}.",
                [InvalidParam(name="scope", reason="Droit non accordé à ce client.")],
            )
        client = Principal(
            Kind.client,
            subject=client_id,
            tenant=row.tenant,
            scopes=frozenset(asked),
            name=row.name,
        )
        return self._answer(client)


# -- mandates (R25) ------------------------------------------------------------------------------

GENERAL_FAMILY = "general"


def representative_key(secret: bytes, tenant: str, identity: dict[str, Any]) -> str | None:
    """A keyed hash of the pivot identity the court decision names; None if incomplete."""
    parts = [identity.get(k) for k in ("family_name", "given_name", "birthdate")]
    if not all(parts):
        return None
    return pseudonym(
        secret, tenant, "representant-legal", "|".join(str(p).strip().casefold() for p in parts)
    )


async def mandate_for(
    session: AsyncSession, principal: Principal, secret: bytes, today: datetime
) -> Any | None:
    """The mandate `principal` says it acts under, if it holds it and it is in force."""
    try:
        mandate_id = uuid.UUID(str(principal.acting_for))
    except ValueError:
        return None
    row = await repository.get_mandate(session, mandate_id)
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_on is not None and row.expires_on < today.date():
        return None
    if row.kind == "aidant":
        holds = principal.has_role(row.tenant, Role.mediator) and principal.subject == row.holder
    else:
        holds = principal.kind is Kind.citizen and hmac.compare_digest(
            representative_key(secret, row.tenant, principal.identity) or "", row.holder
        )
    return row if holds else None


def _mandate_public(row: Any) -> MandatePublic:
    return MandatePublic(
        id=row.id,
        tenant=row.tenant,
        kind=row.kind,
        holder=row.holder_label,
        grantor=row.grantor_label,
        granted_at=row.granted_at,
        expires_on=row.expires_on,
        revoked=row.revoked_at is not None,
    )


def _holder_label(representative: RepresentativeIdentity) -> str:
    return f"{representative.given_name} {representative.family_name} (représentant légal)"


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def _unknown_client() -> Problem:
    return Problem(
        404,
        "client-unknown",
        "Client inconnu",
        "Aucun client de cette collectivité ne porte cet identifiant.",
    )


def _provider_down(name: str) -> Problem:
    return Problem(
        502,
        "identity-provider-unavailable",
        "Fournisseur d'identité indisponible",
        f"Le fournisseur d'identité « {name} » ne répond pas correctement ; réessayez dans "
        "quelques minutes.",
    )
