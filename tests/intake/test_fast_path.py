"""PostgreSQL's submission in two round trips: the same answers and rows as the session path.

The fast path (one read, one single-statement write on a bare connection) must be a
pure optimisation: byte for byte the same public answer, the same rows (JSON as
stored), the same events, and the outbox guarantees unchanged.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from guichet_intake import repository, service
from guichet_intake.models import metadata, signing_keys
from guichet_intake.seed import seed_demo
from guichet_intake.service import IntakeService
from guichet_intake.settings import IntakeSettings
from guichet_plumbing.bus import KafkaBus, Outgoing
from guichet_plumbing.db import Database
from guichet_plumbing.localinfra import LocalBroker
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.outbox import Relay
from guichet_plumbing.problems import Problem
from tests.intake.helpers import body
from tests.plumbing.kafka_tools import read_topic
from tests.support import seeded_database

AT = datetime(2026, 5, 15, 9, 0, tzinfo=UTC)
PAPER = {
    "procedure": None,
    "channel": "mail",
    "contact_preference": "letter",
    "applicant": {
        "name": "Jean Dupont",
        "postal_address": {"street": "2 rue Haute", "postal_code": "99999", "city": "Admiville"},
    },
}
# Every column that the clock of the write sets rather than the request.
WRITE_CLOCK = {"created_at"}
# What each table is compared by (serial ids included: both databases start empty).
TABLES = {
    "requests": "received_at, id",
    "request_history": "id",
    "receipts": "issued_at, id",
    "outbox": "seq",
    "idempotency_keys": "key",
}


class Ids:
    """uuid4 and the tracking codes' random bytes from a counter, restartable."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self._n = itertools.count(1)

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=next(self._n))

    def token_bytes(self, size: int) -> bytes:
        return next(self._n).to_bytes(size, "big")


@pytest.fixture
def ids(monkeypatch: pytest.MonkeyPatch) -> Ids:
    ids = Ids()
    monkeypatch.setattr(uuid, "uuid4", ids.uuid4)
    monkeypatch.setattr(service.secrets, "token_bytes", ids.token_bytes)
    return ids


@pytest.fixture
async def twins(
    pg_database: Callable[[str], str], data_dir: Path
) -> AsyncIterator[tuple[IntakeService, IntakeService]]:
    """Two PostgreSQL databases, the same signing key in both: one per path."""
    async with (
        seeded_database(pg_database("fast"), metadata, seed_demo) as fast_db,
        seeded_database(pg_database("session"), metadata, seed_demo) as session_db,
    ):
        # The second identical send is flagged (R9), so the scenario covers that branch too.
        settings = IntakeSettings(data_dir=data_dir, abuse_repeat_min_count=2)
        fast = IntakeService(fast_db, settings, ServiceMetrics("intake"))
        generic = IntakeService(session_db, settings, ServiceMetrics("intake"))
        generic.fast_path = False
        await fast.rotate_key("admiville", AT - timedelta(days=1))
        async with fast_db.sessions() as source, session_db.transaction() as target:
            [key] = (await source.execute(sa.select(signing_keys))).mappings().all()
            await target.execute(signing_keys.insert().values(**key))
        yield fast, generic


def with_link_checked(intake: IntakeService, answer: Any) -> Any:
    """The answer, its follow-up link checked to open its own request."""
    created = json.loads(answer.body)
    code = created["tracking_code"]
    prefix = f"{intake.settings.public_url}/v1/requests/{code}?access="
    assert created["follow_url"].startswith(prefix)
    assert intake.token_keys.verify_link(
        created["follow_url"].removeprefix(prefix), f"request:{code}", AT + timedelta(hours=1)
    )
    return answer.status_code, created


async def scenario(intake: IntakeService, ids: Ids) -> list[Any]:
    """Every branch of a submission: AR, replay, R9 repetition, AE, paper, NUL, refusals."""
    ids.restart()
    submitted = [
        await intake.submit(body(), "key-1", now=AT),
        await intake.submit(body(), "key-1", now=AT + timedelta(minutes=1)),
        await intake.submit(body(), None, now=AT + timedelta(minutes=2)),
        await intake.submit(body(procedure=None), "key-2", now=AT + timedelta(minutes=3)),
        await intake.submit(body(**PAPER), None, now=AT + timedelta(minutes=4)),
        # U+0000 is valid JSON; PostgreSQL's `json` keeps it, its `text` cannot.
        await intake.submit(body(payload={"salle": "a\x00b"}), None, now=AT + timedelta(minutes=5)),
    ]
    assert submitted[1] == submitted[0], "the same key replays the same bytes"
    answers: list[Any] = [with_link_checked(intake, a) for a in submitted]
    for refused, key in (
        (body(channel="email"), "key-1"),  # key reused with another body
        (body(procedure="signalement-voirie"), None),  # location required
        (body(tenant="nulle-part"), None),
    ):
        with pytest.raises(Problem) as problem:
            await intake.submit(refused, key, now=AT + timedelta(minutes=5))
        answers.append(bytes(problem.value.response().body))
    return answers


async def stored_rows(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Each table as PostgreSQL keeps it, JSON as its stored text."""
    rows = {}
    async with db.raw() as conn:
        for table, order in TABLES.items():
            found = await conn.fetch(f"SELECT * FROM {table} ORDER BY {order}")
            rows[table] = [
                {k: v for k, v in record.items() if k not in WRITE_CLOCK} for record in found
            ]
    return rows


async def test_fast_path_gives_the_session_paths_answers_and_rows(
    twins: tuple[IntakeService, IntakeService], ids: Ids
) -> None:
    fast, generic = twins
    fast_answers = await scenario(fast, ids)
    generic_answers = await scenario(generic, ids)
    assert fast_answers == generic_answers
    assert [status for status, _ in fast_answers[:5]] == [201] * 5

    fast_rows, generic_rows = await stored_rows(fast.db), await stored_rows(generic.db)
    assert fast_rows == generic_rows
    counts = {table: len(rows) for table, rows in fast_rows.items()}
    # 5 requests (AR, R9 repetition, AE, paper, NUL); history: 2 + 2 + 2 + 1 + 2;
    # 3 receipts; one received event each and one receipt event per receipt; 2 keys kept.
    assert counts == {
        "requests": 5,
        "request_history": 9,
        "receipts": 3,
        "outbox": 8,
        "idempotency_keys": 2,
    }


async def test_concurrent_retry_loses_its_whole_write_and_replays_the_winner(
    twins: tuple[IntakeService, IntakeService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two submissions with one key racing: the second one's read saw no kept answer, so
    it writes; its idempotency record clashes LAST in the one statement, and nothing of
    it stays (request, history, receipt, events): it answers what the first one did."""
    fast, _ = twins
    first = await fast.submit(body(), "key-1", now=AT)
    reads = repository.submission_reads

    async def before_the_winner_committed(*args: Any) -> Any:
        return [(None, recent) for _kept, recent in await reads(*args)]

    monkeypatch.setattr(repository, "submission_reads", before_the_winner_committed)
    again = await fast.submit(body(), "key-1", now=AT + timedelta(seconds=1))
    assert again == first
    rows = await stored_rows(fast.db)
    assert len(rows["requests"]) == 1
    assert len(rows["request_history"]) == 2
    assert len(rows["receipts"]) == 1
    assert len(rows["outbox"]) == 2


class DiesBeforePublish:
    """Stands for the relay's process killed after the commit, before the broker has it."""

    async def publish_batch(self, events: list[Outgoing]) -> int:
        raise ConnectionResetError("process killed")


async def test_fast_path_events_survive_a_crash_and_publish_once(
    twins: tuple[IntakeService, IntakeService],
    kafka: LocalBroker,
    topic_prefix: str,
) -> None:
    fast, _ = twins
    created = await fast.submit(body(), None, now=AT)
    assert created.status_code == 201
    with pytest.raises(ConnectionResetError):
        await Relay(fast.db, DiesBeforePublish(), ServiceMetrics("t")).run_once()  # type: ignore[arg-type]

    bus = KafkaBus(kafka.bootstrap_servers, topic_prefix=topic_prefix)
    bus.declare(["intake.request.received.v1", "intake.receipt.issued.v1"])
    await bus.start()
    try:
        restarted = Relay(fast.db, bus, ServiceMetrics("t"))
        assert await restarted.run_once() == 2
        assert await restarted.run_once() == 0, "a second pass must not publish again"
    finally:
        await bus.stop()
    on_wire = await read_topic(kafka.bootstrap_servers, topic_prefix + "intake.request.received.v1")
    assert [e.subject for e in on_wire] == [json.loads(created.body)["id"]]
    assert await Relay(fast.db, bus, ServiceMetrics("t")).backlog() == 0


async def test_fast_path_survives_connections_closed_by_the_server(
    twins: tuple[IntakeService, IntakeService],
) -> None:
    """After a database restart the pooled connections are dead: the bare pool notices
    (no pre-ping round trip needed) and the request still goes through, stored once."""
    fast, _ = twins
    await fast.submit(body(), None, now=AT)
    async with fast.db.sessions() as session:
        await session.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    created = await fast.submit(body(payload={"autre": True}), None, now=AT + timedelta(hours=2))
    assert created.status_code == 201
    rows = await stored_rows(fast.db)
    assert len(rows["requests"]) == 2


def _index_scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(plan["Relation Name"], plan["Index Name"])] if "Index Name" in plan else []
    for child in plan.get("Plans", []):
        found += _index_scans(child)
    return found


async def test_r9_read_uses_the_source_index_even_before_the_first_analyze(
    pg_database: Callable[[str], str],
) -> None:
    """The R9 read is a prepared statement run at every submission: the plan PostgreSQL
    caches for it on a fresh, never analysed table must already look the source up,
    not scan the tenant's whole hour and filter it."""
    async with seeded_database(pg_database("plan"), metadata, seed_demo) as db, db.raw() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE r9 AS {repository._SUBMISSION_READS}")
        [plan] = json.loads(
            await conn.fetchval(
                "EXPLAIN (FORMAT JSON) EXECUTE r9('submit', '{NULL}', '{admiville}', "
                "'{email:a@example.org}', ARRAY[now()], ARRAY[now()], '{h}', '{20}', '{3}', "
                "'{email,sms,web}')"
            )
        )
        await conn.execute("DEALLOCATE r9")
        await conn.execute("RESET plan_cache_mode")
    on_requests = {index for table, index in _index_scans(plan["Plan"]) if table == "requests"}
    assert on_requests == {"ix_requests_source"}
