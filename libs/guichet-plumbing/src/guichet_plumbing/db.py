"""Async database access for SQLite (embedded default) and PostgreSQL (production).

Each service owns one database. Plumbing tables (outbox, processed events,
idempotency keys) live in every service's database, beside its own tables, so a
state change and its event commit together.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> sa.MetaData:
    return sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Stores UTC, always hands back an aware datetime (SQLite keeps no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def async_url(url: str) -> str:
    """Accept plain `postgresql://` / `sqlite://` URLs and pick the async driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


# What a bare connection raises when the server closed it (a restart, a terminated backend).
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionError,
)


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = async_url(url)
        # Read on every unit of work: parse the URL once.
        self.engine_dialect_name = sa.engine.make_url(self.url).get_backend_name()
        self.pool_size = pool_size
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_postgres:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._raw_pool: asyncpg.Pool | None = None
        self._raw_pool_lock = asyncio.Lock()

    @property
    def is_postgres(self) -> bool:
        return self.engine_dialect_name == "postgresql"

    @property
    def is_sqlite(self) -> bool:
        return self.engine_dialect_name == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits on success, rolls back on any error."""
        async with self.sessions() as session, session.begin():
            if self.is_sqlite:
                # Take the write lock up front: a deferred transaction that reads
                # then writes fails outright if another writer committed between.
                await session.connection(execution_options={"sqlite_immediate": True})
            yield session

    @asynccontextmanager
    async def raw(self) -> AsyncIterator[asyncpg.Connection]:
        """PostgreSQL only: a bare asyncpg connection for hot paths, in autocommit mode.

        Each statement is its own transaction unless the caller opens one. Through
        SQLAlchemy a unit of work costs a pre-ping (BEGIN, a query, ROLLBACK), BEGIN and
        COMMIT around its statements; here a one-statement write is one round trip. The
        connections carry asyncpg's own codecs (JSON as text, not SQLAlchemy's).
        """
        if not self.is_postgres:
            raise RuntimeError("Database.raw() is for PostgreSQL only")
        pool = self._raw_pool or await self._open_raw_pool()
        async with pool.acquire() as conn:
            yield conn

    async def connect(self) -> asyncpg.Connection:
        """PostgreSQL only: a bare connection of the caller's own, outside every pool, for
        a long-lived loop that must not queue behind requests (the caller closes it)."""
        return await asyncpg.connect(self._driver_url())

    def _driver_url(self) -> str:
        url = sa.engine.make_url(self.url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    async def _open_raw_pool(self) -> asyncpg.Pool:
        async with self._raw_pool_lock:
            if self._raw_pool is None:
                self._raw_pool = await asyncpg.create_pool(
                    self._driver_url(),
                    min_size=1,
                    max_size=self.pool_size,
                    # The default reset (RESET ALL, UNLISTEN, ...) is a round trip per
                    # release; hot paths change no session state. asyncpg still rolls
                    # back a transaction left open before the connection goes back.
                    reset=_keep_session,
                )
            return self._raw_pool

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """One holder at a time across processes sharing this database (PostgreSQL
        advisory lock on `name`); SQLite is one process's embedded store: no lock."""
        if not self.is_postgres:
            yield
            return
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        # A connection of its own, closed after: the lock goes with it even on a crash.
        conn = await self.connect()
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", key)
            yield
        finally:
            await conn.close()

    async def create_all(self, *metadatas: sa.MetaData) -> None:
        async with self.engine.begin() as conn:
            for metadata in metadatas:
                await conn.run_sync(metadata.create_all)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        if self._raw_pool is not None:
            await self._raw_pool.close()
            self._raw_pool = None
        await self.engine.dispose()


async def _keep_session(_conn: asyncpg.Connection) -> None:
    return None


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not the driver, decides where transactions begin (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    # WAL lets readers run beside the single writer; busy_timeout queues writers
    # instead of failing them with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


Rows = Sequence[Mapping[str, Any]]


async def insert_rows(conn: asyncpg.Connection, batches: Sequence[tuple[sa.Table, Rows]]) -> None:
    """PostgreSQL: insert rows into several tables in ONE statement, so in one transaction.

    Tables with no rows are left out; rows go in in their given order (serial columns
    follow it). Values are what SQLAlchemy would bind, JSON columns serialised as it
    does, so the rows are the same as through a session. One statement per shape (tables,
    columns, row counts) is prepared once per connection and reused.
    """
    present = [(table, rows) for table, rows in batches if rows]
    if not present:
        return
    shape = tuple((table, tuple(rows[0]), len(rows)) for table, rows in present)
    sql, json_columns = _insert_rows_sql(shape)
    args: list[Any] = []
    for (_, columns, _), (_, rows), json_flags in zip(shape, present, json_columns, strict=True):
        for row in rows:
            for column, how in zip(columns, json_flags, strict=True):
                value = row[column]
                if how is _JsonBind.DUMP or (how is _JsonBind.DUMP_NOT_NONE and value is not None):
                    value = json.dumps(value)
                args.append(value)
    await conn.execute(sql, *args)


class _JsonBind(Enum):
    """How SQLAlchemy binds a column's Python value."""

    AS_IS = 0
    DUMP = 1  # JSON column: None too becomes the JSON `null` (none_as_null=False)
    DUMP_NOT_NONE = 2  # JSON column with none_as_null=True: None is SQL NULL


def _json_bind(column: sa.Column[Any]) -> _JsonBind:
    if not isinstance(column.type, sa.JSON):
        return _JsonBind.AS_IS
    return _JsonBind.DUMP_NOT_NONE if column.type.none_as_null else _JsonBind.DUMP


# PostgreSQL's limit on the parameters of one statement.
_MAX_PARAMETERS = 32767


@cache
def _insert_rows_sql(
    shape: tuple[tuple[sa.Table, tuple[str, ...], int], ...],
) -> tuple[str, list[tuple[_JsonBind, ...]]]:
    """The statement for these tables, columns and row counts; how each column binds."""
    dialect: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    quote = dialect.identifier_preparer.quote
    parts: list[str] = []
    json_columns: list[tuple[_JsonBind, ...]] = []
    param = 0
    for table, columns, count in shape:
        json_columns.append(tuple(_json_bind(table.c[c]) for c in columns))
        tuples = []
        for _ in range(count):
            tuples.append("(" + ", ".join(f"${param + i + 1}" for i in range(len(columns))) + ")")
            param += len(columns)
        # Identifiers from the table metadata only, quoted; every value is a parameter
        # (typed by its target column, so no casts).
        names = ", ".join(quote(c) for c in columns)
        insert = f"INSERT INTO {quote(table.name)} ({names}) VALUES "  # noqa: S608
        parts.append(insert + ", ".join(tuples))
    if param > _MAX_PARAMETERS:
        raise ValueError(f"{param} values exceed one statement's {_MAX_PARAMETERS} parameters")
    # Data-modifying CTEs: every INSERT runs, all in the one statement.
    *ctes, last = parts
    head = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(ctes))
    return (f"WITH {head} " if ctes else "") + last, json_columns


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's transaction commits (never on rollback)."""
    session.info.setdefault("after_commit", []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop("after_commit", []):
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)
