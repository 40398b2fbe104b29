"""Where e-mails go: a real SMTP server, or a local mailbox folder in the embedded default."""

from __future__ import annotations

import os
import tempfile
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib


class MailTransport(Protocol):
    async def send(self, message: EmailMessage, recipient: str) -> None: ...


class MailboxFolder:
    """Writes `<delivery id>.eml` atomically: one delivery sent twice overwrites, never doubles."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, message: EmailMessage, recipient: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = str(message["X-Guichet-Delivery"])
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(message.as_bytes())
        os.replace(tmp, self.folder / f"{name}.eml")


class Smtp:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError("SMTP URL must look like smtp://host:port or smtps://host:port")
        self.host = parts.hostname
        self.use_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.use_tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout

    async def send(self, message: EmailMessage, recipient: str) -> None:
        await aiosmtplib.send(
            message,
            recipients=[recipient],
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.use_tls,
            start_tls=False if not self.use_tls and self.username is None else None,
            timeout=self.timeout,
        )
