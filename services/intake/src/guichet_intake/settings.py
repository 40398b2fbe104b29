from __future__ import annotations

from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, HttpUrl, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from guichet_plumbing.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GUICHET_INTAKE_", extra="ignore")

    seed_demo: bool = True
    # Where citizens fetch receipts: links in e-mails and the verification URL in receipts.
    public_url: str = "http://127.0.0.1:8000/intake"
    scheduler_interval: float = 60.0
    # R9: the same content sent this many times from the same source within the window is a
    # repetition (a citizen retrying once after a lost answer is not abusive, R23)...
    abuse_repeat_window_minutes: int = 10
    abuse_repeat_min_count: int = 3
    # ...and more than this many requests from one source in an hour is a flood.
    abuse_max_per_hour: int = 30
    # A source is blocked only once this many of its sends were flagged as abusive.
    abuse_block_min_flagged: int = 3
    transfer_timeout: float = 10.0
    # Hosts that may receive transfers to other administrations. Empty: in production, any
    # host with public addresses only, over HTTPS; elsewhere, any host.
    transfer_allowed_hosts: list[str] = Field(default_factory=list)
    # Administrations whose signed transfers this guichet receives (R12), by name: the
    # address of their published keys, e.g. another Guichet's /intake/.well-known/jwks.json.
    transfer_senders: dict[str, HttpUrl] = Field(default_factory=dict)
    # R15: key of the per-service pseudonymous identifiers of citizens (HMAC). Changing it
    # detaches citizens from their past requests. Unset: a development value.
    pseudonym_secret: SecretStr | None = None
    # How long a follow-up link sent to an anonymous applicant stays valid.
    follow_link_days: int = Field(default=90, ge=1, le=400)

    # Agents' login: the collectivité's OpenID Connect provider (any standard one).
    agent_oidc_issuer: str | None = None
    agent_oidc_client_id: str = "guichet"
    agent_oidc_client_secret: SecretStr | None = None
    # Citizens' optional login: FranceConnect (its issuer differs in integration and
    # production); the post-logout address must be the one registered with FranceConnect.
    franceconnect_issuer: str | None = None
    franceconnect_client_id: str = "guichet"
    franceconnect_client_secret: SecretStr | None = None
    franceconnect_post_logout_redirect_uri: str = "http://127.0.0.1:8000/"
    # OAuth 2 clients: how long a rotated-out secret keeps working.
    client_secret_grace_hours: int = Field(default=24, ge=0, le=24 * 30)

    @model_validator(mode="after")
    def _secrets_in_production(self) -> Self:
        if self.env != "production":
            return self
        if self.pseudonym_secret is None:
            raise ValueError("GUICHET_INTAKE_PSEUDONYM_SECRET is required in production")
        if urlsplit(self.public_url).hostname in ("127.0.0.1", "localhost", "::1"):
            # Every receipt signs this address as where to verify it: never a local one.
            raise ValueError(
                "GUICHET_INTAKE_PUBLIC_URL must be intake's public address in production"
            )
        if any(url.scheme != "https" for url in self.transfer_senders.values()):
            # Keys fetched in clear could be swapped on the way: anyone's transfer received.
            raise ValueError("GUICHET_INTAKE_TRANSFER_SENDERS: keys are fetched over HTTPS only")
        for issuer, secret, name in (
            (self.agent_oidc_issuer, self.agent_oidc_client_secret, "AGENT_OIDC"),
            (self.franceconnect_issuer, self.franceconnect_client_secret, "FRANCECONNECT"),
        ):
            if issuer is not None and secret is None:
                raise ValueError(f"GUICHET_INTAKE_{name}_CLIENT_SECRET is required in production")
        return self

    def pseudonym_key(self) -> bytes:
        secret = self.pseudonym_secret
        return (secret.get_secret_value() if secret else "guichet-development-pseudonyms").encode()
