"""Real components for the whole suite: one PostgreSQL and one Kafka-protocol broker
per test session (per xdist worker), one SMTP server per test that wants one.

A component that cannot start fails the tests that need it, naming what is
missing; nothing is skipped silently.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from guichet_plumbing.localinfra import LocalBroker, LocalPostgres, free_port

# The identity provider of the tests speaks plain HTTP on the loopback.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

_counter = itertools.count()


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """An xdist worker has sent all its results by now. If its last cleanup outlasts 5 s,
    execnet interrupts it with SIGINT (`_terminate_execution`), which lands as a
    KeyboardInterrupt in whatever runs then (a gc callback) and is printed as a warning
    after the results; nothing is left for it to stop."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    # Short path: PostgreSQL's Unix socket path must stay under ~100 characters.
    server = LocalPostgres(tmp_path_factory.mktemp("pg") / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = LocalBroker().start(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield broker
    broker.stop()


@pytest.fixture
def pg_database(postgres: LocalPostgres, request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Makes a fresh database for this test: `pg_database("intake")` returns its URL."""

    def make(label: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:30]
        name = f"t_{_worker()}_{next(_counter)}_{label}_{slug}"[:63]
        return postgres.create_database(name)

    return make


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """Kafka topics and groups private to this test on the shared broker."""
    return f"t{_worker()}-{next(_counter)}-"


@dataclass
class Mailbox:
    """What a real SMTP server (aiosmtpd) received."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [
            m
            for m, (_, rcpts) in zip(self.messages, self.envelopes, strict=True)
            if address in rcpts
        ]


@dataclass
class SmtpServer:
    url: str
    mailbox: Mailbox


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(url=f"smtp://127.0.0.1:{port}", mailbox=mailbox)
    finally:
        controller.stop()


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    leaked = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert not leaked, f"background tasks left running: {leaked}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


# FranceConnect's scope `identite_pivot` and the claims it releases (R14).
PIVOT_SCOPE_CLAIMS = [
    "given_name",
    "family_name",
    "gender",
    "birthdate",
    "birthplace",
    "birthcountry",
    "preferred_username",
]


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[str]:
    """A real OpenID Connect provider (oidc-provider-mock, on authlib) for the session.

    It is told FranceConnect's `identite_pivot` scope, as FranceConnect defines it, so one
    server plays both the agents' provider and FranceConnect. Yields its issuer URL.
    """
    import oidc_provider_mock
    from oidc_provider_mock import _app, _storage

    _storage.Client.SCOPES_SUPPORTED = (*_storage.Client.SCOPES_SUPPORTED, "identite_pivot")
    _app._SCOPES_TO_CLAIMS["identite_pivot"] = PIVOT_SCOPE_CLAIMS
    with oidc_provider_mock.run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"
