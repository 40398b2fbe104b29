"""OpenID Connect relying party (authorisation code flow) with authlib: agents' identity
provider and FranceConnect alike.

Discovery, `state` and `nonce` per login, `acr_values` when the provider needs them
(FranceConnect: `eidas1`), the ID token verified here against the provider's JWKS
(signature, issuer, audience, expiry, nonce, acr), and logout at the provider's
end-session endpoint with `id_token_hint` and a registered redirect.
"""

from __future__ import annotations

import secrets
import time
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.deprecate import AuthlibDeprecationWarning

with warnings.catch_warnings():
    # authlib announces a move to the `httpx2` package; `httpx` is what it uses today.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

# Algorithms an identity provider may sign ID tokens with; never "none", never HMAC with
# a secret the relying party shares.
ID_TOKEN_ALGORITHMS = ["RS256", "ES256", "PS256"]
_METADATA_TTL = 3600.0


class LoginRefused(Exception):
    """The provider's answer cannot be trusted: the login stops here."""


@dataclass(frozen=True)
class ProviderConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scope: str = "openid email"
    acr_values: str | None = None
    post_logout_redirect_uri: str | None = None


@dataclass
class Login:
    """What the relying party keeps between the redirection and the callback."""

    url: str
    state: str
    nonce: str


@dataclass
class OidcProvider:
    config: ProviderConfig
    http: httpx.AsyncClient | None = None
    _metadata: tuple[float, dict[str, Any]] | None = field(default=None, repr=False)
    _jwks: KeySet | None = field(default=None, repr=False)

    async def _get(self, url: str) -> dict[str, Any]:
        if self.http is not None:
            answer = await self.http.get(url)
        else:
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.get(url)
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, cached for an hour."""
        if self._metadata is None or self._metadata[0] < time.monotonic():
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            data = await self._get(url)
            if data.get("issuer") != self.config.issuer.rstrip("/"):
                raise LoginRefused("discovery names another issuer")
            self._metadata = (time.monotonic() + _METADATA_TTL, data)
        return self._metadata[1]

    async def _keys(self, refresh: bool = False) -> KeySet:
        if self._jwks is None or refresh:
            published: Any = await self._get((await self.metadata())["jwks_uri"])
            self._jwks = KeySet.import_key_set(published)
        return self._jwks

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.config.client_id,
            client_secret=self.config.client_secret,
            redirect_uri=self.config.redirect_uri,
            scope=self.config.scope,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
        )

    async def start(self) -> Login:
        """The authorisation URL, with a fresh state and nonce the caller must keep."""
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        extra = {"nonce": nonce}
        if self.config.acr_values:
            extra["acr_values"] = self.config.acr_values
        async with self._client() as client:
            url, _ = client.create_authorization_url(
                (await self.metadata())["authorization_endpoint"], state=state, **extra
            )
        return Login(url=url, state=state, nonce=nonce)

    async def finish(self, code: str, nonce: str) -> tuple[dict[str, Any], str, str]:
        """Exchange the code; the verified ID token claims, the ID token, the access token."""
        metadata = await self.metadata()
        try:
            async with self._client() as client:
                token = await client.fetch_token(metadata["token_endpoint"], code=code)
        except Exception as exc:
            raise LoginRefused(f"code exchange failed: {exc}") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise LoginRefused("no ID token in the provider's answer")
        claims = await self.verify_id_token(id_token, nonce)
        return claims, id_token, str(token.get("access_token", ""))

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """Signature (the provider's JWKS), issuer, audience, expiry, nonce and acr."""
        try:
            try:
                decoded = jwt.decode(id_token, await self._keys(), algorithms=ID_TOKEN_ALGORITHMS)
            except JoseError:
                # The provider may have rotated its keys since we fetched them.
                keys = await self._keys(refresh=True)
                decoded = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
            options: dict[str, Any] = {
                "iss": {"essential": True, "value": self.config.issuer.rstrip("/")},
                "aud": {"essential": True, "value": self.config.client_id},
                "exp": {"essential": True},
                "sub": {"essential": True},
                "nonce": {"essential": True, "value": nonce},
            }
            JWTClaimsRegistry(leeway=60, **options).validate(decoded.claims)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise LoginRefused(f"ID token refused: {exc}") from exc
        claims = dict(decoded.claims)
        if self.config.acr_values and claims.get("acr") not in (None, self.config.acr_values):
            raise LoginRefused("authentication level below the one asked for")
        return claims

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        url = (await self.metadata())["userinfo_endpoint"]
        headers = {"Authorization": f"Bearer {access_token}"}
        if self.http is not None:
            answer = await self.http.get(url, headers=headers)
        else:
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.get(url, headers=headers)
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    async def logout_url(self, id_token_hint: str, state: str) -> str:
        """RP-initiated logout at the provider, back to the registered redirect."""
        endpoint = (await self.metadata()).get("end_session_endpoint")
        if not endpoint:
            raise LoginRefused("the provider has no end-session endpoint")
        params = {"id_token_hint": id_token_hint, "state": state}
        if self.config.post_logout_redirect_uri:
            params["post_logout_redirect_uri"] = self.config.post_logout_redirect_uri
        return f"{endpoint}?{urlencode(params)}"
