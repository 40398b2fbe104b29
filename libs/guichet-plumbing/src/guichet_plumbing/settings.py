"""Settings shared by every service; each service subclasses with its own env prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from guichet_plumbing.auth import TokenKeys, development_keys

ONE_MIB = 1024 * 1024


class ServiceSettings(BaseSettings):
    """Read from `GUICHET_<SERVICE>_*` (prefix set by each subclass), falling back to `GUICHET_*`.

    So `GUICHET_BUS=kafka` sets every service, and `GUICHET_ROUTING_BUS` only routing.
    """

    model_config = SettingsConfigDict(env_prefix="GUICHET_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        shared = EnvSettingsSource(settings_cls, env_prefix="GUICHET_")
        return init_settings, env_settings, shared, dotenv_settings, file_secret_settings

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; defaults to a SQLite file in data_dir."
    )
    bus: Literal["inprocess", "kafka"] = "inprocess"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = ""
    # Tansu (tests, local runs) has no idempotent producer; real Kafka should turn it on.
    kafka_idempotent_producer: bool = False
    relay_enabled: bool = True
    relay_poll_interval: float = 0.5
    max_body_bytes: int = ONE_MIB
    # Hot routes served without FastAPI's per-request machinery (`guichet_plumbing.lane`).
    fast_lanes: bool = True
    log_level: str = "INFO"
    json_logs: bool = True

    # Guichet's bearer tokens: a JWK set of EC P-256 private keys, the signing one first
    # (`python -m guichet_launcher keys` makes one; prepend a new key to rotate). Every
    # service of a deployment gets the same set. Unset: a fixed development key.
    auth_signing_keys: SecretStr | None = None
    auth_issuer: str = "guichet"
    auth_token_minutes: int = Field(default=60, ge=1, le=24 * 60)
    # Logins without a password for each role, for `make run` (never in production).
    demo_logins: bool = True
    # Writes allowed per client (token subject) or per source address, in the `limits`
    # notation; empty: no limit (benchmarks).
    write_rate_limit: str | None = "120/minute"

    @model_validator(mode="after")
    def _no_development_secrets_in_production(self) -> Self:
        if self.env == "production":
            if self.auth_signing_keys is None:
                raise ValueError(
                    "GUICHET_AUTH_SIGNING_KEYS is required in production: the development "
                    "token key is public"
                )
            if self.demo_logins:
                raise ValueError("demo logins are refused in production: GUICHET_DEMO_LOGINS=0")
        return self

    def token_keys(self) -> TokenKeys:
        keys = self.auth_signing_keys
        return TokenKeys(
            keys.get_secret_value() if keys else development_keys(), issuer=self.auth_issuer
        )

    def sqlite_url(self, service: str) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / f'{service}.sqlite3').resolve()}"

    def resolved_database_url(self, service: str) -> str:
        return self.database_url or self.sqlite_url(service)
