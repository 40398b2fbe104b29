"""`after_commit`: work queued in a transaction runs once, and only once its top level commits."""

from __future__ import annotations

import contextlib
from pathlib import Path

import sqlalchemy as sa

from guichet_plumbing.db import Database, after_commit


async def test_a_savepoint_released_then_its_parent_rolled_back_runs_nothing(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    fired: list[str] = []
    async with db.transaction() as session:
        with contextlib.suppress(RuntimeError):
            async with session.begin_nested():
                async with session.begin_nested():
                    after_commit(session, lambda: fired.append("child of a rolled-back parent"))
                raise RuntimeError
    await db.dispose()
    assert fired == []


async def test_nothing_runs_before_the_root_commits_nor_when_it_rolls_back(
    tmp_path: Path,
) -> None:
    # The sweep's pattern: a callback queued, then a savepoint released; the root then
    # rolls back. Nothing was committed: nothing may run (a key must not be cached, R2).
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    fired: list[str] = []
    with contextlib.suppress(RuntimeError):
        async with db.transaction() as session:
            after_commit(session, lambda: fired.append("root, rolled back"))
            async with session.begin_nested():
                pass
            assert fired == [], "ran at a savepoint's release, before any commit"
            raise RuntimeError
    await db.dispose()
    assert fired == []


async def test_queued_before_the_first_statement_then_rolled_back_never_runs(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    fired: list[str] = []
    async with db.sessions() as session:
        after_commit(session, lambda: fired.append("rolled back"))
        await session.execute(sa.text("SELECT 1"))
        await session.rollback()
        await session.execute(sa.text("SELECT 1"))
        await session.commit()
    await db.dispose()
    assert fired == []
