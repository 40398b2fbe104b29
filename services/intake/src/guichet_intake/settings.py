from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from guichet_plumbing.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GUICHET_INTAKE_", extra="ignore")

    seed_demo: bool = True
    # Where citizens fetch receipts: links in e-mails and the verification URL in receipts.
    public_url: str = "http://127.0.0.1:8000/intake"
    scheduler_interval: float = 60.0
    # R9: the same content from the same source within this window is a repetition...
    abuse_repeat_window_minutes: int = 10
    # ...and more than this many requests from one source in an hour is a flood.
    abuse_max_per_hour: int = 30
    transfer_timeout: float = 10.0
    # Hosts that may receive transfers to other administrations; empty: any (HTTPS only in
    # production).
    transfer_allowed_hosts: list[str] = Field(default_factory=list)
    # R15: key of the per-service pseudonymous identifiers of citizens (HMAC). Changing it
    # detaches citizens from their past requests. Unset: a development value.
    pseudonym_secret: SecretStr | None = None
    # How long a follow-up link sent to an anonymous applicant stays valid.
    follow_link_days: int = Field(default=90, ge=1, le=400)

    @model_validator(mode="after")
    def _pseudonym_secret_in_production(self) -> Self:
        if self.env == "production" and self.pseudonym_secret is None:
            raise ValueError("GUICHET_INTAKE_PSEUDONYM_SECRET is required in production")
        return self

    def pseudonym_key(self) -> bytes:
        secret = self.pseudonym_secret
        return (secret.get_secret_value() if secret else "guichet-development-pseudonyms").encode()
