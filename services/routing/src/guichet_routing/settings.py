from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from guichet_plumbing.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GUICHET_ROUTING_", extra="ignore")

    seed_demo: bool = True
    # Timed transitions and periodic digests are checked this often (seconds).
    scheduler_interval: float = 60.0
    # Intake's public API, where Open311 reports are filed like any other request (R23).
    intake_url: str = "http://127.0.0.1:8000/intake"
    intake_timeout: float = 10.0
    # Open311 clients allowed to file reports (api_key); empty: any client may.
    open311_api_keys: list[str] = Field(default_factory=list)
