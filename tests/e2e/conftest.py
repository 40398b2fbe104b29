"""The production topology, for the end-to-end tests that run on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from guichet_launcher.services import SERVICES
from guichet_plumbing.localinfra import LocalBroker
from tests.conftest import SmtpServer
from tests.e2e.flow import Urls
from tests.support import serve


@pytest.fixture
async def distributed(
    pg_database: Callable[[str], str],
    kafka: LocalBroker,
    topic_prefix: str,
    smtp_server: SmtpServer,
    data_dir: Path,
) -> AsyncIterator[Urls]:
    """Four apps, four PostgreSQL databases, Kafka; e-mails to `smtp_server`."""
    urls: dict[str, str] = {}
    async with AsyncExitStack() as stack:
        for spec in SERVICES:
            overrides: dict[str, object] = {
                "database_url": pg_database(spec.name),
                "bus": "kafka",
                "kafka_bootstrap_servers": kafka.bootstrap_servers,
                "kafka_topic_prefix": topic_prefix,
                "data_dir": data_dir,
            }
            if spec.name == "notifications":
                overrides.update(smtp_url=smtp_server.url, sender_poll_interval=0.2)
            # Each service is its own app with its own bus client, as in production.
            urls[spec.name] = await stack.enter_async_context(serve(spec.create(**overrides)))
        yield Urls(**urls)
