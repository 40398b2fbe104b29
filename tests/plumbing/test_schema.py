"""A database kept from an earlier version is brought up to date at start, its rows kept."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from guichet_plumbing.db import Database, SchemaError, new_metadata

ID = uuid.UUID("9b0c1d3e-4f5a-4b6c-8d7e-0f1a2b3c4d5e")


def requests_table(metadata: sa.MetaData, *extra: sa.Column[Any]) -> sa.Table:
    return sa.Table(
        "requests",
        metadata,
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("label", sa.Text(), nullable=False),
        *extra,
    )


def earlier() -> sa.MetaData:
    metadata = new_metadata()
    requests_table(metadata)
    return metadata


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_database: Callable[[str], str]
) -> AsyncIterator[Database]:
    url = f"sqlite:///{tmp_path / 'kept.db'}" if request.param == "sqlite" else pg_database("kept")
    database = Database(url)
    metadata = earlier()
    await database.create_all(metadata)
    async with database.transaction() as session:
        await session.execute(metadata.tables["requests"].insert(), {"id": ID, "label": "reçue"})
    yield database
    await database.dispose()


async def test_new_columns_and_indexes_are_added_and_stored_rows_kept(db: Database) -> None:
    later = new_metadata()
    table = requests_table(
        later,
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("told", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("service", sa.String(64), nullable=True, index=True),
    )
    sa.Table("transfers", later, sa.Column("id", sa.Integer(), primary_key=True))
    await db.create_all(later)
    await db.create_all(later)  # a second start, or a second replica: nothing more to do

    async with db.transaction() as session:
        rows = (await session.execute(sa.select(table))).all()
        assert [tuple(r) for r in rows] == [(ID, "reçue", None, 0, False, None)]
        await session.execute(
            table.insert(), {"id": uuid.uuid4(), "label": "transmise", "service": "voirie"}
        )
        assert (await session.execute(sa.text("SELECT count(*) FROM transfers"))).scalar() == 0

        def index_names(conn: sa.Connection) -> set[str | None]:
            return {ix["name"] for ix in sa.inspect(conn).get_indexes("requests")}

        assert "ix_requests_service" in await (await session.connection()).run_sync(index_names)


# Each a factory: a column belongs to one table only.
UNADDABLE: dict[str, Callable[[], sa.Column[Any]]] = {
    # Stored rows would have no value for it.
    "not-null-without-default": lambda: sa.Column("owner", sa.Text(), nullable=False),
    "unique": lambda: sa.Column("code", sa.Text(), nullable=True, unique=True),
    "foreign-key": lambda: sa.Column(
        "parent", sa.Uuid(), sa.ForeignKey("requests.id"), nullable=True
    ),
}


@pytest.mark.parametrize("kind", UNADDABLE)
async def test_a_column_an_addition_cannot_bring_stops_the_start(db: Database, kind: str) -> None:
    column = UNADDABLE[kind]()
    later = new_metadata()
    requests_table(later, column)
    with pytest.raises(SchemaError, match=f"table requests: column {column.name} "):
        await db.create_all(later)
    async with db.transaction() as session:  # nothing half done
        columns = await (await session.connection()).run_sync(
            lambda conn: [c["name"] for c in sa.inspect(conn).get_columns("requests")]
        )
        assert columns == ["id", "label"]


async def test_a_stored_column_no_longer_written_that_refuses_null_stops_the_start(
    db: Database,
) -> None:
    later = new_metadata()
    sa.Table("requests", later, sa.Column("id", sa.Uuid(), primary_key=True))
    with pytest.raises(SchemaError, match="table requests: stored column label is NOT NULL"):
        await db.create_all(later)
