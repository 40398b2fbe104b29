"""The same flow in the production topology: four apps, four PostgreSQL databases, Kafka."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from guichet_launcher.services import SERVICES
from guichet_plumbing.localinfra import LocalBroker
from tests.conftest import SmtpServer
from tests.e2e.flow import Urls, drive_flow
from tests.support import serve


async def test_distributed_flow_over_postgres_and_kafka(
    pg_database: Callable[[str], str],
    kafka: LocalBroker,
    topic_prefix: str,
    smtp_server: SmtpServer,
    data_dir: Path,
) -> None:
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
        await drive_flow(Urls(**urls), smtp_server)
