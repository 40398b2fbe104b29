"""Gateway settings, read from `GUICHET_GATEWAY_*` then `GUICHET_*`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from guichet_plumbing.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GUICHET_GATEWAY_", extra="ignore")

    provider: Literal["sandbox"] = Field(
        default="sandbox",
        description="Quotient familial source. Only the sandbox exists until an API Particulier "
        "client implements the provider port.",
    )
    sandbox_cases_dir: Path | None = Field(
        default=None,
        description="Folder of staging cases to replay; defaults to the packaged copy.",
    )
    rate_limit_retry_after: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="Seconds sent in Retry-After when the provider throttles without saying.",
    )

    @model_validator(mode="after")
    def _no_sandbox_in_production(self) -> Self:
        # Fictitious people must never reach a real decision on a citizen's rights.
        if self.env == "production" and self.provider == "sandbox":
            raise ValueError(
                "the sandbox provider serves staging data: it cannot run with env=production"
            )
        return self
