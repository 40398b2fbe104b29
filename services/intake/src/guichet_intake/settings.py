from __future__ import annotations

from pydantic import Field
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
    # Hosts that may receive transfers to other administrations; empty: any (HTTPS only in
    # production).
    transfer_allowed_hosts: list[str] = Field(default_factory=list)
