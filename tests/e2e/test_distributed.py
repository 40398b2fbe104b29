"""The same flow in the production topology: four apps, four PostgreSQL databases, Kafka."""

from __future__ import annotations

from tests.conftest import SmtpServer
from tests.e2e.flow import Urls, drive_flow


async def test_distributed_flow_over_postgres_and_kafka(
    distributed: Urls, smtp_server: SmtpServer
) -> None:
    await drive_flow(distributed, smtp_server)
