from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from guichet_intake.models import metadata
from guichet_intake.seed import seed_demo
from guichet_intake.service import IntakeService
from guichet_intake.settings import IntakeSettings
from guichet_plumbing import tables
from guichet_plumbing.db import Database
from guichet_plumbing.observability import ServiceMetrics


@pytest.fixture(params=["sqlite", "postgres"])
async def intake_db(
    request: pytest.FixtureRequest, data_dir: Path, pg_database: Callable[[str], str]
) -> AsyncIterator[Database]:
    """Intake's database with the demo tenant, on both supported engines."""
    url = (
        f"sqlite:///{data_dir / 'intake.sqlite3'}"
        if request.param == "sqlite"
        else pg_database("intake")
    )
    db = Database(url)
    await db.create_all(metadata, tables.metadata)
    await seed_demo(db)
    yield db
    await db.dispose()


@pytest.fixture
def intake(intake_db: Database, data_dir: Path) -> IntakeService:
    return IntakeService(intake_db, IntakeSettings(data_dir=data_dir), ServiceMetrics("intake"))
