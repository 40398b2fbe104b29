"""Routing's database, on SQLite (the embedded default) and on PostgreSQL, seeded with
the demo tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from guichet_plumbing import tables
from guichet_plumbing.db import Database
from guichet_routing.models import metadata
from guichet_routing.seed import seed_demo


@pytest.fixture(params=["sqlite", "postgres"])
async def routing_db(
    request: pytest.FixtureRequest, data_dir: Path, pg_database: Callable[[str], str]
) -> AsyncIterator[Database]:
    url = (
        f"sqlite:///{data_dir / 'routing.sqlite3'}"
        if request.param == "sqlite"
        else pg_database("routing")
    )
    db = Database(url)
    await db.create_all(metadata, tables.metadata)
    await seed_demo(db)
    yield db
    await db.dispose()
