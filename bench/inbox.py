"""Latency of the agents' inbox on 1,000,000 requests in PostgreSQL.

`make bench-inbox` (and `make bench`) runs this. It starts a throw-away PostgreSQL,
creates routing's schema from its models (indexes included), bulk-loads a city's worth
of routed requests with COPY, runs ANALYZE, then calls routing's own `service.inbox`
(the page query and the counts per status, exactly as the endpoint builds them) for the
ten most common inbox views, a few hundred times each. It prints p50/p99 per view and
the plan of the slowest statement. It asserts no target: it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from guichet_plumbing import tables
from guichet_plumbing.db import Database
from guichet_plumbing.localinfra import LocalPostgres
from guichet_routing import service
from guichet_routing.models import assignments, metadata, services, teams, tenants
from guichet_routing.repository import InboxFilter

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
YEARS = 3

# Tenants by share of the requests: one big city, a mid-sized one, three small towns.
TENANTS = [("grandeville", 0.55), ("moyenneville", 0.25), ("bourg-a", 0.1), ("bourg-b", 0.06)]
TENANTS.append(("bourg-c", 1 - sum(share for _, share in TENANTS)))
# Services by share, their procedures, teams and answer commitment (days).
SERVICES: list[tuple[str, float, list[str], list[str], int | None]] = [
    ("voirie", 0.34, ["signalement-voirie", "eclairage", "proprete"], ["nord", "sud", "nuit"], 8),
    ("etat-civil", 0.24, ["acte-naissance", "acte-mariage", "acte-deces"], ["actes"], 15),
    ("accueil", 0.16, ["reservation-salle", "question"], [], None),
    ("urbanisme", 0.1, ["permis-construire", "declaration-prealable"], ["instruction"], 60),
    ("guichet-unique", 0.1, ["inscription-periscolaire", "cantine"], [], 10),
    ("citoyennete", 0.06, ["subvention-quartier"], [], 30),
]
CHANNELS = [("web", 0.55), ("email", 0.15), ("phone", 0.12), ("counter", 0.1), ("mail", 0.05)]
CHANNELS.append(("sms", 1 - sum(share for _, share in CHANNELS)))
NEIGHBOURHOODS = [f"quartier-{n:02d}" for n in range(1, 13)]
FIRST = ["Camille", "Léa", "Louis", "Jade", "Gabriel", "Emma", "Raphaël", "Chloé", "Arthur"]
# Surnames, most common first: a name's frequency falls with its rank, as in a real city.
LAST = [
    *("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand"),
    *("Leroy", "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David"),
    *("Bertrand", "Roux", "Vincent", "Fournier", "Morel", "Girard", "André", "Mercier"),
    *("Nguyen", "Diallo", "Benali", "Da Silva", "Müller", "Lopez", "Fontaine", "Masson"),
]
LAST_WEIGHTS = [1 / rank for rank in range(1, len(LAST) + 1)]
# Some agents handle far more requests than others (part-time, heads of service...).
AGENT_WEIGHTS = [1 / rank**0.7 for rank in range(1, 41)]
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
OPEN_STATUSES = [("recue", "Reçue par le service compétent", "qualification", 0.4)]
OPEN_STATUSES.append(("en_cours", "En cours de traitement", "processing", 0.6))
CLOSED = ("traitee", "Traitée : une réponse vous a été adressée", "delivery")
COLUMNS = [
    "request_id",
    "tenant",
    "tracking_code",
    "procedure_code",
    "procedure_title",
    "channel",
    "applicant_name",
    "received_at",
    "service_code",
    "status",
    "status_label",
    "phase",
    "workflow_version",
    "closed",
    "agent",
    "due_at",
    "assigned_at",
    "rule",
    "neighbourhood",
    "team_code",
    "status_since",
]


def log(message: str) -> None:
    print(f"[bench-inbox] {message}", file=sys.stderr, flush=True)


def weighted(rng: random.Random, choices: list[tuple[str, float]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def rows(count: int, seed: int) -> Iterator[tuple[Any, ...]]:
    """Requests as a city receives them: more recent than old, skewed by service, channel,
    neighbourhood and name; the last weeks' are open, older ones answered."""
    rng = random.Random(seed)
    tenant_weights = [w for _, w in TENANTS]
    service_weights = [s[1] for s in SERVICES]
    channel_codes, channel_weights = zip(*CHANNELS, strict=True)
    place_weights = [1 / (rank + 1) for rank in range(len(NEIGHBOURHOODS))]
    span = YEARS * 365 * 86400
    for _ in range(count):
        tenant = rng.choices(TENANTS, weights=tenant_weights)[0][0]
        code, _, procedures, crews, commitment = rng.choices(SERVICES, weights=service_weights)[0]
        # Growth over time: newer requests are denser (square root of a uniform draw).
        age = span * (1 - rng.random() ** 0.5)
        received = NOW - timedelta(seconds=age)
        recent = age < 45 * 86400
        if recent and rng.random() < 0.7:
            status, label, phase, _ = rng.choices(OPEN_STATUSES, weights=[0.4, 0.6])[0]
            closed = False
        else:
            (status, label, phase), closed = CLOSED, True
        procedure = rng.choice(procedures)
        agents = 40 if tenant == "grandeville" else 8
        agent = (
            None
            if status == "recue"
            else f"{tenant}-agent-{rng.choices(range(agents), weights=AGENT_WEIGHTS[:agents])[0]}"
        )
        tracking = "-".join("".join(rng.choice(ALPHABET) for _ in range(4)) for _ in range(4))
        yield (
            uuid.UUID(int=rng.getrandbits(128), version=4),
            tenant,
            tracking,
            procedure,
            procedure.replace("-", " ").capitalize(),
            rng.choices(channel_codes, weights=channel_weights)[0],
            f"{rng.choice(FIRST)} {rng.choices(LAST, weights=LAST_WEIGHTS)[0]}",
            received,
            code,
            status,
            label,
            phase,
            0,
            closed,
            agent,
            received + timedelta(days=commitment) if commitment else None,
            received + timedelta(seconds=1),
            f"règle « Démarche {procedure} »",
            rng.choices(NEIGHBOURHOODS, weights=place_weights)[0]
            if code == "voirie" or rng.random() < 0.2
            else None,
            rng.choice(crews) if crews and rng.random() < 0.9 else None,
            received,
        )


async def load(db: Database, count: int, chunk: int) -> float:
    """The model's schema, then COPY without the assignments' indexes, then the indexes."""
    started = time.perf_counter()
    await db.create_all(metadata, tables.metadata)
    async with db.engine.begin() as conn:
        for tenant, _ in TENANTS:
            await conn.execute(
                tenants.insert().values(code=tenant, name=tenant, default_service="accueil")
            )
            for code, _, _, crews, commitment in SERVICES:
                await conn.execute(
                    services.insert().values(
                        tenant=tenant, code=code, name=code, commitment_days=commitment
                    )
                )
                for crew in crews:
                    await conn.execute(
                        teams.insert().values(
                            tenant=tenant, service_code=code, code=crew, name=crew
                        )
                    )
        for index in assignments.indexes:
            await conn.execute(sa.text(f"DROP INDEX {index.name}"))
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        source = rows(count, seed=20261123)
        loaded = 0
        while loaded < count:
            batch = [next(source) for _ in range(min(chunk, count - loaded))]
            await driver.copy_records_to_table("assignments", records=batch, columns=COLUMNS)
            loaded += len(batch)
            log(f"loaded {loaded:,} rows")
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("SET maintenance_work_mem = '512MB'"))
        for index in assignments.indexes:
            log(f"creating {index.name}")
            await conn.execute(sa.schema.CreateIndex(index))
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM ANALYZE assignments"))
    return time.perf_counter() - started


@dataclass
class View:
    name: str
    make: Callable[[random.Random], InboxFilter]


def big_service(rng: random.Random) -> str:
    return rng.choices([s[0] for s in SERVICES], weights=[s[1] for s in SERVICES])[0]


def tenant_of(rng: random.Random) -> str:
    # Agents of the big city make most inbox calls: measure the worst tenant mostly.
    return "grandeville" if rng.random() < 0.8 else weighted(rng, TENANTS)


VIEWS = [
    View("service", lambda r: InboxFilter(tenant_of(r), service=big_service(r))),
    View(
        "service + status to qualify",
        lambda r: InboxFilter(tenant_of(r), service=big_service(r), status="recue"),
    ),
    View(
        "service + team",
        lambda r: InboxFilter(tenant_of(r), service="voirie", team=r.choice(["nord", "sud"])),
    ),
    View(
        "assigned to me",
        lambda r: InboxFilter("grandeville", agent=f"grandeville-agent-{r.randrange(40)}"),
    ),
    View(
        "service overdue",
        lambda r: InboxFilter(tenant_of(r), service=big_service(r), overdue_at=NOW),
    ),
    View("whole tenant", lambda r: InboxFilter(tenant_of(r))),
    View(
        "service + channel",
        lambda r: InboxFilter(tenant_of(r), service=big_service(r), channel=weighted(r, CHANNELS)),
    ),
    View(
        "service + procedure",
        lambda r: InboxFilter(tenant_of(r), service="voirie", procedure="signalement-voirie"),
    ),
    View(
        "service + neighbourhood",
        lambda r: InboxFilter(
            tenant_of(r), service="voirie", neighbourhood=r.choice(NEIGHBOURHOODS)
        ),
    ),
    View("text (surname)", lambda r: InboxFilter(tenant_of(r), text=r.choice(LAST[5:]))),
]


class Recorder:
    """Every statement's SQL and parameters, as the driver received them."""

    def __init__(self, db: Database) -> None:
        self.statements: list[tuple[str, Any, float]] = []
        self._started = 0.0
        sa.event.listen(db.engine.sync_engine, "before_cursor_execute", self.before)
        sa.event.listen(db.engine.sync_engine, "after_cursor_execute", self.after)

    def before(self, *_: Any) -> None:
        self._started = time.perf_counter()

    def after(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.statements.append((statement, parameters, time.perf_counter() - self._started))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def explain(conn: AsyncConnection, statement: str, parameters: Any) -> str:
    result = await conn.exec_driver_sql(
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters
    )
    return "\n".join(row[0] for row in result.all())


async def measure(db: Database, iterations: int) -> list[dict[str, Any]]:
    recorder = Recorder(db)
    rng = random.Random(7)
    report = []
    for view in VIEWS:
        for _ in range(20):  # warm the cache and the prepared statements
            await service.inbox(db, view.make(rng), cursor=None, limit=50)
        totals, pages, counts = [], [], []
        worst: tuple[float, str, Any] = (0.0, "", None)
        for index in range(iterations):
            where = view.make(rng)
            # Every other call reads a next page, by the cursor the first page gave.
            cursor = None
            if index % 2:
                cursor = (await service.inbox(db, where, cursor=None, limit=50)).next_cursor
            recorder.statements.clear()
            started = time.perf_counter()
            await service.inbox(db, where, cursor=cursor, limit=50)
            totals.append(time.perf_counter() - started)
            page_sql = [
                s for s in recorder.statements if "ORDER BY assignments.received_at" in s[0]
            ]
            count_sql = [s for s in recorder.statements if "count(*)" in s[0]]
            pages += [s[2] for s in page_sql]
            counts += [s[2] for s in count_sql]
            for statement, parameters, took in page_sql + count_sql:
                if took > worst[0]:
                    worst = (took, statement, parameters)
        report.append(
            {
                "view": view.name,
                "calls": iterations,
                "p50_ms": percentile(totals, 0.5) * 1000,
                "p99_ms": percentile(totals, 0.99) * 1000,
                "page_p99_ms": percentile(pages, 0.99) * 1000,
                "counts_p99_ms": percentile(counts, 0.99) * 1000,
                "worst_ms": worst[0] * 1000,
                "worst_sql": worst[1],
                "worst_parameters": [str(p) for p in worst[2]] if worst[2] else [],
                "_parameters": worst[2],
            }
        )
        log(f"{view.name}: p50 {report[-1]['p50_ms']:.1f} ms, p99 {report[-1]['p99_ms']:.1f} ms")
    return report


async def run(args: argparse.Namespace, postgres: LocalPostgres) -> dict[str, Any]:
    db = Database(postgres.create_database("inbox_bench"), pool_size=2)
    try:
        load_s = await load(db, args.rows, args.chunk)
        log(f"loaded and indexed in {load_s:.0f} s")
        report = await measure(db, args.iterations)
        slowest = max(report, key=lambda r: r["worst_ms"])
        async with db.engine.connect() as conn:
            plan = await explain(conn, slowest["worst_sql"], slowest["_parameters"])
            sizes = (
                await conn.exec_driver_sql(
                    "SELECT indexrelname, pg_size_pretty(pg_relation_size(indexrelid)) "
                    "FROM pg_stat_user_indexes WHERE relname = 'assignments' "
                    "ORDER BY indexrelname"
                )
            ).all()
            table_size = (
                await conn.exec_driver_sql("SELECT pg_size_pretty(pg_table_size('assignments'))")
            ).scalar()
    finally:
        await db.dispose()
    for entry in report:
        entry.pop("_parameters")
    return {
        "rows": args.rows,
        "load_seconds": round(load_s, 1),
        "views": report,
        "slowest": {"view": slowest["view"], "sql": slowest["worst_sql"], "plan": plan},
        "table_size": table_size,
        "indexes": {name: size for name, size in sizes},
    }


def print_report(result: dict[str, Any], load_before: float) -> None:
    print()
    print(
        f"Inbox on {result['rows']:,} requests (PostgreSQL; load average before: {load_before:.2f})"
    )
    print(f"{'view':<30} {'p50 ms':>8} {'p99 ms':>8} {'page p99':>9} {'counts p99':>11}")
    for view in result["views"]:
        print(
            f"{view['view']:<30} {view['p50_ms']:>8.1f} {view['p99_ms']:>8.1f} "
            f"{view['page_p99_ms']:>9.1f} {view['counts_p99_ms']:>11.1f}"
        )
    print("\n(p50/p99: one inbox call as the API makes it — tenant, services, page of 50, counts")
    print(" per status; half the calls read a second page by cursor.)")
    print(f"\nTable {result['table_size']}; indexes:")
    for name, size in result["indexes"].items():
        print(f"  {name:<40} {size}")
    slowest = result["slowest"]
    print(f"\nSlowest statement seen ({slowest['view']}):\n{slowest['sql']}\n")
    print(slowest["plan"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=300, help="inbox calls per view")
    parser.add_argument("--chunk", type=int, default=50_000, help="rows per COPY")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="guichet-bench-inbox-"))
    postgres = LocalPostgres(tmp / "pgdata")
    try:
        log(f"PostgreSQL under {tmp}")
        postgres.start()
        result = asyncio.run(run(args, postgres))
    finally:
        postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print_report(result, load_before)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"inbox-{stamp}.json"
    path.write_text(
        json.dumps({**result, "load_before": load_before}, indent=2, ensure_ascii=False)
    )
    print(f"\nSaved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
