from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from guichet_plumbing.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GUICHET_NOTIFICATIONS_", extra="ignore")

    smtp_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "GUICHET_NOTIFICATIONS_SMTP_URL", "GUICHET_SMTP_URL", "smtp_url"
        ),
        description="smtp://host:port (or smtps://user:password@host:port); "
        "unset: e-mails are written to mailbox_dir.",
    )
    mailbox_dir: Path | None = Field(
        default=None, description="Folder receiving .eml files; defaults to <data_dir>/mailbox."
    )
    sender: str = "Guichet <ne-pas-repondre@guichet.example>"
    sender_poll_interval: float = 1.0
    max_attempts: int = 8

    def resolved_mailbox_dir(self) -> Path:
        return self.mailbox_dir or self.data_dir / "mailbox"
