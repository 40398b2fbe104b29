from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from guichet_intake.models import metadata
from guichet_intake.seed import seed_demo
from guichet_intake.service import IntakeService
from guichet_intake.settings import IntakeSettings
from guichet_plumbing.db import Database
from guichet_plumbing.observability import ServiceMetrics
from tests.support import engine_url, seeded_database


@pytest.fixture(params=["sqlite", "postgres"])
async def intake_db(
    request: pytest.FixtureRequest, data_dir: Path, pg_database: Callable[[str], str]
) -> AsyncIterator[Database]:
    """Intake's database with the demo tenant, on both supported engines."""
    url = engine_url(request.param, "intake", data_dir, pg_database)
    async with seeded_database(url, metadata, seed_demo) as db:
        yield db


@pytest.fixture
def intake(intake_db: Database, data_dir: Path) -> IntakeService:
    return IntakeService(intake_db, IntakeSettings(data_dir=data_dir), ServiceMetrics("intake"))
