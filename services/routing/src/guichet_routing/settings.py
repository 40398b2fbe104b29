from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from guichet_plumbing.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GUICHET_ROUTING_", extra="ignore")

    seed_demo: bool = True
    # Timed transitions and periodic digests are checked this often (seconds).
    scheduler_interval: float = 60.0
