"""PostgreSQL helpers of the hot paths: one-statement inserts and cross-process exclusion."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from guichet_plumbing.db import (
    Database,
    Grouped,
    UTCDateTime,
    after_commit,
    grouped_inserts,
    insert_rows,
    new_metadata,
)

metadata = new_metadata()
parents = sa.Table(
    "parents",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("doc", sa.JSON(), nullable=True),
    sa.Column("strict_doc", sa.JSON(none_as_null=True), nullable=True),
)
children = sa.Table(
    "children",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("parent_id", sa.Uuid(), sa.ForeignKey("parents.id"), nullable=False),
    sa.Column("label", sa.Text(), nullable=False),
)
AT = datetime(2026, 5, 15, 9, 0, tzinfo=UTC)


@pytest.fixture
async def db(pg_database: Callable[[str], str]) -> AsyncIterator[Database]:
    database = Database(pg_database("plumbing"))
    await database.create_all(metadata)
    yield database
    await database.dispose()


def parent(doc: object, strict_doc: object) -> dict[str, object]:
    return {"id": uuid.uuid4(), "at": AT, "doc": doc, "strict_doc": strict_doc}


async def as_stored(db: Database, table: sa.Table, order: str) -> list[tuple[object, ...]]:
    async with db.raw() as conn:
        # JSON comes back as the text PostgreSQL keeps: the comparison is byte for byte.
        rows = await conn.fetch(f"SELECT * FROM {table.name} ORDER BY {order}")
    return [tuple(r.values()) for r in rows]


async def test_one_statement_stores_what_a_session_stores(db: Database) -> None:
    docs = [({"é": [1, 2]}, None), (None, {"a": None}), ("texte", None), ({"n": 10**30}, None)]
    docs += [({"nul": "a\x00b"}, "\x00")]  # NUL: valid in JSON text, never in PG text
    through_session = [parent(*d) for d in docs]
    async with db.transaction() as session:
        await session.execute(parents.insert(), through_session)
    session_rows = await as_stored(db, parents, "at, id")
    async with db.transaction() as session:
        await session.execute(parents.delete())

    async with db.raw() as conn:
        await insert_rows(conn, [(parents, through_session), (children, [])])
    assert await as_stored(db, parents, "at, id") == session_rows


async def test_rows_keep_their_order_and_children_see_their_parent(db: Database) -> None:
    first = parent(None, None)
    labels = ["reçue", "accusé", "signalée"]
    async with db.raw() as conn:
        await insert_rows(
            conn,
            [
                (parents, [first]),
                (children, [{"parent_id": first["id"], "label": x} for x in labels]),
            ],
        )
    stored = await as_stored(db, children, "id")
    assert [label for _, _, label in stored] == labels


async def test_a_failure_anywhere_in_the_statement_stores_nothing(db: Database) -> None:
    orphan = {"parent_id": uuid.uuid4(), "label": "sans parent"}
    async with db.raw() as conn:
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await insert_rows(conn, [(parents, [parent(None, None)]), (children, [orphan])])
    assert await as_stored(db, parents, "id") == []


async def test_one_statement_takes_any_number_of_rows(db: Database) -> None:
    # One array parameter per column: far beyond PostgreSQL's 32,767 parameters.
    first = parent(None, None)
    many = [{"parent_id": first["id"], "label": f"n{i}"} for i in range(20000)]
    async with db.raw() as conn:
        await insert_rows(conn, [(parents, [first]), (children, many)])
        assert await conn.fetchval("SELECT count(*) FROM children") == 20000


async def test_a_value_too_long_is_refused_not_truncated(db: Database) -> None:
    short = new_metadata()
    names = sa.Table("names", short, sa.Column("name", sa.String(3), primary_key=True))
    await db.create_all(short)
    async with db.raw() as conn:
        with pytest.raises(asyncpg.StringDataRightTruncationError):
            await insert_rows(conn, [(names, [{"name": "abcd"}])])
        assert await conn.fetchval("SELECT count(*) FROM names") == 0


async def test_calls_arriving_while_a_group_runs_go_together_in_the_next() -> None:
    groups: list[list[int]] = []
    release = asyncio.Event()

    async def run(items: list[int]) -> list[int | BaseException]:
        groups.append(items)
        await release.wait()
        return [-i if i == 3 else i * 10 for i in items[:-1]] + [ValueError(items[-1])]

    double = Grouped(run)
    first = asyncio.create_task(double(0))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(double(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    release.set()
    outcomes = await asyncio.gather(first, *rest, return_exceptions=True)
    assert groups == [[0], [1, 2, 3, 4, 5]]
    assert [str(o) if isinstance(o, ValueError) else o for o in outcomes] == [
        "0",  # alone in its group, so last in it: the ValueError
        10,
        20,
        -3,
        40,
        "5",
    ]


async def test_a_bad_write_in_a_group_fails_alone_and_the_others_commit(db: Database) -> None:
    write = grouped_inserts(db)
    good = [parent(None, None) for _ in range(4)]
    orphan = {"parent_id": uuid.uuid4(), "label": "sans parent"}
    batches = [[(parents, [p]), (children, [{"parent_id": p["id"], "label": "ok"}])] for p in good]
    batches.insert(2, [(children, [orphan])])
    outcomes = await asyncio.gather(*(write(b) for b in batches), return_exceptions=True)
    assert [type(o).__name__ for o in outcomes] == [
        "NoneType",
        "NoneType",
        "ForeignKeyViolationError",
        "NoneType",
        "NoneType",
    ]
    stored = await as_stored(db, children, "id")
    assert [(parent_id, label) for _, parent_id, label in stored] == [(p["id"], "ok") for p in good]


async def test_a_write_whose_caller_went_away_still_commits(db: Database) -> None:
    write = grouped_inserts(db)
    row = parent(None, None)
    caller = asyncio.create_task(write([(parents, [row])]))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    stored = await eventually_stored(db)
    assert [r[0] for r in stored] == [row["id"]]


async def test_a_failed_write_whose_caller_went_away_logs_nothing(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    write = grouped_inserts(db)
    orphan = {"parent_id": uuid.uuid4(), "label": "sans parent"}
    caller = asyncio.create_task(write([(children, [orphan])]))
    await asyncio.sleep(0)
    runner = write._runner
    assert runner is not None
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await runner  # the group ran, and failed, without its caller
    gc.collect()
    assert "never retrieved" not in caplog.text
    assert await as_stored(db, children, "id") == []


async def eventually_stored(db: Database) -> list[tuple[object, ...]]:
    for _ in range(100):
        if stored := await as_stored(db, parents, "id"):
            return stored
        await asyncio.sleep(0.02)
    return []


async def test_concurrent_writes_share_statements(db: Database) -> None:
    write = grouped_inserts(db)
    statements = 0
    raw = db.raw

    @contextlib.asynccontextmanager
    async def counted() -> AsyncIterator[Any]:
        nonlocal statements
        statements += 1
        async with raw() as conn:
            yield conn

    db.raw = counted  # type: ignore[method-assign]
    rows = [parent(None, None) for _ in range(50)]
    await asyncio.gather(*(write([(parents, [r])]) for r in rows))
    assert len(await as_stored(db, parents, "id")) == 50
    assert statements < 50


async def test_exclusive_lets_one_holder_in_at_a_time(db: Database) -> None:
    other = Database(db.url)
    inside: list[str] = []
    first_in = asyncio.Event()

    async def hold(database: Database, name: str) -> None:
        async with database.exclusive("startup:test"):
            inside.append(f"{name} in")
            first_in.set()
            await asyncio.sleep(0.2)
            inside.append(f"{name} out")

    try:
        holder = asyncio.create_task(hold(db, "a"))
        await first_in.wait()
        await hold(other, "b")
        await holder
    finally:
        await other.dispose()
    assert inside == ["a in", "a out", "b in", "b out"]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_work_after_commit_survives_a_savepoint_rolled_back_but_its_own(
    engine: str, pg_database: Callable[[str], str], tmp_path: Path
) -> None:
    # The owed-receipt sweep issues each receipt in a savepoint: one collectivité failing
    # must not cost the others the relay's wake-up queued after their receipts.
    url = f"sqlite:///{tmp_path / 'after.db'}" if engine == "sqlite" else pg_database("after")
    db = Database(url)
    fired: list[str] = []
    async with db.transaction() as session:
        after_commit(session, lambda: fired.append("before"))
        with contextlib.suppress(RuntimeError):
            async with session.begin_nested():
                after_commit(session, lambda: fired.append("rolled-back savepoint"))
                raise RuntimeError
        async with session.begin_nested():
            after_commit(session, lambda: fired.append("kept savepoint"))
        with contextlib.suppress(RuntimeError):
            async with session.begin_nested():
                raise RuntimeError
        after_commit(session, lambda: fired.append("after"))
    assert fired == ["before", "kept savepoint", "after"]
    with contextlib.suppress(RuntimeError):
        async with db.transaction() as session:
            after_commit(session, lambda: fired.append("rolled back"))
            raise RuntimeError
    assert fired == ["before", "kept savepoint", "after"]
    await db.dispose()
