from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from guichet_plumbing.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GUICHET_INTAKE_", extra="ignore")

    seed_demo: bool = True
