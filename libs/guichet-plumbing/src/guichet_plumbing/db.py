"""Async database access for SQLite (embedded default) and PostgreSQL (production).

Each service owns one database. Plumbing tables (outbox, processed events,
idempotency keys) live in every service's database, beside its own tables, so a
state change and its event commit together.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, Generic, TypeVar

import asyncpg
import orjson
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
from sqlalchemy.orm import Session, SessionTransaction

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> sa.MetaData:
    return sa.MetaData(naming_convention=NAMING_CONVENTION)


class SchemaError(RuntimeError):
    """A stored table that an additive upgrade cannot bring to the code's shape."""


def upgrade_schema(conn: sa.Connection, metadata: sa.MetaData) -> None:
    """Create what is missing; give a table kept from an earlier version its new columns
    and indexes, so an update keeps the data a collectivité has already stored.

    Only additions are made, in the caller's transaction: a new column must be nullable
    or have a server default (rows already stored need a value). What an addition cannot
    do (a new key or unique column, a stored column the code no longer writes but that
    refuses NULL) stops the start with the table and column named, before anything is
    served, rather than failing requests one by one later.
    """
    metadata.create_all(conn)  # new tables, with their indexes
    inspector = sa.inspect(conn)
    preparer = conn.dialect.identifier_preparer
    for table in metadata.sorted_tables:
        stored = {c["name"]: c for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in stored:
                continue
            addable = column.nullable or column.server_default is not None
            constrained = any(
                column.name in constraint.columns
                for constraint in table.constraints
                if isinstance(constraint, sa.schema.ColumnCollectionConstraint)
            )
            if not addable or constrained or column.unique:
                raise SchemaError(
                    f"table {table.name}: column {column.name} cannot be added to stored "
                    "rows (it is constrained, or NOT NULL without a server default): this "
                    "update needs a written migration"
                )
            spec = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
            conn.execute(sa.text(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {spec}"))
        for name, info in stored.items():
            if name not in table.columns and not info["nullable"] and info["default"] is None:
                raise SchemaError(
                    f"table {table.name}: stored column {name} is NOT NULL without a default "
                    "and this version no longer writes it: this update needs a written "
                    "migration"
                )
        for index in table.indexes:
            index.create(conn, checkfirst=True)


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


def dump_json(value: Any) -> str:
    """JSON columns as stored, by the session and by `insert_rows` alike (UTF-8, compact)."""
    return dump_json_bytes(value).decode()


def dump_json_bytes(value: Any) -> bytes:
    """`dump_json` as UTF-8 bytes, for what goes to the database as they are.

    orjson writes NaN and infinities as null and refuses integers past 64 bits (and
    decimals): the first never reach here (the JSON reader refuses them, `jsonbody`),
    the others fall back to `json`, written alike (dates, UUIDs and decimals as text).
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        text = json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))
        return text.encode()


def _json_default(value: Any) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)  # UUID, Decimal


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = async_url(url)
        # Read on every unit of work: parse the URL once.
        self.engine_dialect_name = sa.engine.make_url(self.url).get_backend_name()
        self.pool_size = pool_size
        kwargs: dict[str, Any] = {"echo": echo, "json_serializer": dump_json}
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
        """The tables, created, or brought up to date by `upgrade_schema`."""
        async with self.engine.begin() as conn:
            for metadata in metadatas:
                await conn.run_sync(upgrade_schema, metadata)

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
# Rows for several tables, written together by `insert_rows`.
Batches = Sequence[tuple[sa.Table, Rows]]
T = TypeVar("T")
R = TypeVar("R")


async def insert_rows(conn: asyncpg.Connection, batches: Batches) -> None:
    """PostgreSQL: insert rows into several tables in ONE statement, so in one transaction.

    Tables with no rows are left out; rows go in in their given order (serial columns
    follow it). Values are what SQLAlchemy would bind, JSON columns serialised as it
    does, so the rows are the same as through a session. Each table's rows travel as one
    JSON document (`json_to_recordset`): one parameter per table, encoded at C speed,
    where an array per column cost asyncpg a type check per value. The statement depends
    on the tables and columns only, never on how many rows: prepared once per connection.
    """
    present = [(table, rows) for table, rows in batches if rows]
    if not present:
        return
    shape = tuple((table, tuple(rows[0])) for table, rows in present)
    sql, encoders = _insert_rows_sql(shape)
    args = [_rows_json(rows, encode) for (_, rows), encode in zip(present, encoders, strict=True)]
    await conn.execute(sql, *args)


# How a column's values travel inside the rows document, where it is not as JSON has it.
Encoders = tuple[tuple[str, Callable[[Any], Any]], ...]


def _rows_json(rows: Rows, encoders: Encoders) -> bytes:
    """The rows as a JSON array of objects, each value as its column's encoder says, in
    UTF-8: sent as bytes, it is neither decoded here nor encoded again by the driver
    (about 6 µs for the 10 KB of one intake submission)."""
    if encoders:
        rows = [{**row, **{c: encode(row[c]) for c, encode in encoders}} for row in rows]
    return dump_json_bytes(rows)


def _bytea_hex(value: bytes | None) -> str | None:
    return None if value is None else "\\x" + value.hex()


def _json_text_or_null(value: Any) -> str | None:
    return None if value is None else dump_json(value)


class Grouped(Generic[T, R]):
    """Concurrent calls of one async operation, run in groups (group commit).

    While one group runs, the calls that arrive wait and run together in the next, so
    under load one round trip (and for a write one commit and one WAL flush) serves many
    requests, and an idle system runs each call at once (a group of one). `run` gets the
    group's items and returns, in the same order, each item's result or the exception
    that item alone would have raised.
    """

    def __init__(
        self, run: Callable[[list[T]], Awaitable[list[R | BaseException]]], max_group: int = 128
    ) -> None:
        self.run = run
        self.max_group = max_group
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run_groups())
        # A caller that goes away (a client hanging up) cancels only its own future: its
        # group runs on, its rows commit with the others', and its outcome is dropped.
        return await done

    async def _run_groups(self) -> None:
        try:
            while self._waiting:
                group = self._waiting[: self.max_group]
                del self._waiting[: self.max_group]
                try:
                    outcomes = await self.run([item for item, _ in group])
                except Exception as exc:
                    outcomes = [exc] * len(group)
                except BaseException:
                    # Cancelled (the service stopping): nobody may wait for an answer forever.
                    for _, done in group + self._waiting:
                        done.cancel()
                    self._waiting.clear()
                    raise
                for (_, done), outcome in zip(group, outcomes, strict=True):
                    if done.done():
                        continue
                    if isinstance(outcome, BaseException):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
        finally:
            self._runner = None


def grouped_inserts(db: Database, max_group: int = 128) -> Grouped[Batches, None]:
    """`insert_rows` for concurrent callers, several callers' rows in one statement.

    Each caller's rows still commit with all of that caller's rows (one statement, one
    transaction). A group that fails for a reason other than a lost connection is
    written again caller by caller, so one bad write fails its own caller only.
    """

    async def run(group: list[Batches]) -> list[BaseException | None]:
        async with db.raw() as conn:
            try:
                await insert_rows(conn, _merged(group))
            except asyncpg.PostgresError as exc:
                if len(group) == 1 or isinstance(exc, CONNECTION_LOST):
                    raise
            else:
                return [None] * len(group)
            # Nothing of the group was stored: write each alone to find the culprit.
            outcomes: list[BaseException | None] = []
            for batches in group:
                try:
                    await insert_rows(conn, batches)
                except asyncpg.PostgresError as exc:
                    outcomes.append(exc)
                else:
                    outcomes.append(None)
            return outcomes

    return Grouped(run, max_group)


def _merged(groups: Sequence[Batches]) -> list[tuple[sa.Table, Rows]]:
    """Every caller's rows, table by table in first-seen order, callers in arrival order.

    Rows of one table with other columns than the first caller's form their own insert."""
    merged: dict[tuple[sa.Table, tuple[str, ...]], list[Mapping[str, Any]]] = {}
    for batches in groups:
        for table, rows in batches:
            if rows:
                merged.setdefault((table, tuple(rows[0])), []).extend(rows)
    return [(table, rows) for (table, _), rows in merged.items()]


def _column_type(column: sa.Column[Any], dialect: Dialect) -> str:
    # Without its length: a conversion to varchar(n) could truncate, where the INSERT's
    # own assignment refuses a value too long, as through a session.
    return re.sub(r"\(.*\)", "", column.type.compile(dialect=dialect))


def _encoder(column: sa.Column[Any]) -> Callable[[Any], Any] | None:
    kind = column.type
    if isinstance(kind, sa.LargeBinary):
        return _bytea_hex
    if isinstance(kind, sa.JSON):
        # A JSON value travels as its text, cast back in SQL: the stored text is the
        # session's, and strings holding U+0000 (valid JSON, refused by PostgreSQL's
        # `text`) never go through json_to_recordset's unescaping. none_as_null=False
        # (SQLAlchemy's default) stores None as the JSON `null`.
        return _json_text_or_null if kind.none_as_null else dump_json
    return None


@cache
def _insert_rows_sql(
    shape: tuple[tuple[sa.Table, tuple[str, ...]], ...],
) -> tuple[str, list[Encoders]]:
    """The statement for these tables and columns; each table's value encoders."""
    dialect: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    quote = dialect.identifier_preparer.quote
    parts: list[str] = []
    encoders: list[Encoders] = []
    for param, (table, columns) in enumerate(shape, start=1):
        found = [(c, _encoder(table.c[c])) for c in columns]
        encoders.append(tuple((c, e) for c, e in found if e is not None))
        as_text = {c for c in columns if isinstance(table.c[c].type, sa.JSON)}
        names = ", ".join(quote(c) for c in columns)
        types = ", ".join(
            f"{quote(c)} {'text' if c in as_text else _column_type(table.c[c], dialect)}"
            for c in columns
        )
        values = ", ".join(
            f"{quote(c)}::{_column_type(table.c[c], dialect)}" if c in as_text else quote(c)
            for c in columns
        )
        # The rows document arrives as UTF-8 bytes (`_rows_json`).
        document = f"convert_from(${param}::bytea, 'UTF8')::json"
        # Identifiers from the table metadata only, quoted; every value is a parameter.
        # WITH ORDINALITY ... ORDER BY: rows go in in the caller's order.
        parts.append(
            f"INSERT INTO {quote(table.name)} ({names}) "  # noqa: S608
            f"SELECT {values} FROM ROWS FROM (json_to_recordset({document}) AS ({types})) "
            f"WITH ORDINALITY AS u({names}, ord) ORDER BY ord"
        )
    # Data-modifying CTEs: every INSERT runs, all in the one statement.
    *ctes, last = parts
    head = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(ctes))
    return (f"WITH {head} " if ctes else "") + last, encoders


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's transaction commits (never on rollback); one
    queued inside a savepoint is dropped if that savepoint is rolled back, the others kept."""
    sync = session.sync_session
    within = sync.get_nested_transaction() or sync.get_transaction()
    session.info.setdefault("after_commit", []).append((within, callback))


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: its work waits for the whole transaction's commit
    for _, callback in session.info.pop("after_commit", []):
        callback()


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_commit(session: Session, rolled_back: SessionTransaction) -> None:
    """Drop what was queued in the transaction rolled back or in one nested in it."""

    def inside(transaction: SessionTransaction | None) -> bool:
        if transaction is None:  # queued before the first statement: the whole transaction's
            return rolled_back.parent is None
        while transaction is not None:
            if transaction is rolled_back:
                return True
            transaction = transaction.parent
        return False

    queued = session.info.get("after_commit")
    if queued:
        session.info["after_commit"] = [(t, c) for t, c in queued if not inside(t)]
