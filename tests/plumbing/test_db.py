"""PostgreSQL helpers of the hot paths: one-statement inserts and cross-process exclusion."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import pytest
import sqlalchemy as sa

from guichet_plumbing.db import Database, UTCDateTime, insert_rows, new_metadata

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
    docs = [({"é": [1, 2]}, None), (None, {"a": None}), ("texte", None)]
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


async def test_too_many_values_for_one_statement_are_refused(db: Database) -> None:
    many = [{"parent_id": uuid.uuid4(), "label": "x"} for _ in range(16384)]
    async with db.raw() as conn:
        with pytest.raises(ValueError, match="parameters"):
            await insert_rows(conn, [(children, many)])


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
