"""Routing's database, on SQLite (the embedded default) and on PostgreSQL, seeded with
the demo tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from guichet_plumbing.db import Database
from guichet_routing.models import metadata
from guichet_routing.seed import seed_demo
from tests.support import engine_url, seeded_database


@pytest.fixture(params=["sqlite", "postgres"])
async def routing_db(
    request: pytest.FixtureRequest, data_dir: Path, pg_database: Callable[[str], str]
) -> AsyncIterator[Database]:
    url = engine_url(request.param, "routing", data_dir, pg_database)
    async with seeded_database(url, metadata, seed_demo) as db:
        yield db
