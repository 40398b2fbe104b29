"""R30 at scale: routing a located report while many incidents are open.

Seeds `--incidents` open incidents (one report each) spread over a 10 km x 10 km town
and over the last 30 days, then routes `--reports` new reports through routing's real
consumer (`on_request_received`, idempotent wrapper, one transaction each), half of
them 10 m from an existing incident, half anywhere in town, each followed by a request
without a place through the same consumer (the cost of everything but R30). Prints
latencies, how many reports joined an incident, and the plan of the bounding-box query.
Runs on a throw-away PostgreSQL and on SQLite. Asserts nothing: it reports.

    .venv/bin/python bench/incident_lookup.py --incidents 100000 --reports 1000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from guichet_intake.events import ApplicantContact, RequestReceived
from guichet_plumbing import tables
from guichet_plumbing.db import Database
from guichet_plumbing.inbox import idempotent
from guichet_plumbing.localinfra import LocalPostgres
from guichet_plumbing.observability import ServiceMetrics
from guichet_routing import incidents, repository, service
from guichet_routing.models import assignments, metadata
from guichet_routing.models import incidents as incident_table
from guichet_routing.models import reports as report_table
from guichet_routing.seed import seed_demo

LAT, LON = 48.80, 2.30  # south-west corner of the town
DEG_PER_M = 1 / incidents.METRES_PER_DEGREE_LATITUDE
SPAN_LAT, SPAN_LON = 10_000 * DEG_PER_M, 10_000 / 73_300  # 1° of longitude is 73.3 km here
NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
PROCEDURE = "signalement-voirie"


def _place(rng: random.Random) -> tuple[float, float]:
    return LAT + rng.random() * SPAN_LAT, LON + rng.random() * SPAN_LON


async def seed(db: Database, count: int, rng: random.Random) -> list[tuple[float, float]]:
    await db.create_all(metadata, tables.metadata)
    await seed_demo(db)
    places = []
    batch_a: list[dict[str, Any]] = []
    batch_i: list[dict[str, Any]] = []
    batch_r: list[dict[str, Any]] = []

    async def flush() -> None:
        async with db.transaction() as session:
            await session.execute(assignments.insert(), batch_a)
            await session.execute(incident_table.insert(), batch_i)
            await session.execute(report_table.insert(), batch_r)
        batch_a.clear(), batch_i.clear(), batch_r.clear()

    for n in range(count):
        lat, lon = _place(rng)
        places.append((lat, lon))
        request_id, incident_id = uuid.uuid4(), uuid.uuid4()
        at = NOW - timedelta(minutes=rng.randrange(30 * 24 * 60))
        batch_a.append(
            {
                "request_id": request_id,
                "tenant": "admiville",
                "tracking_code": f"BENCH-{n:010d}",
                "procedure_code": PROCEDURE,
                "procedure_title": "Signalement",
                "channel": "web",
                "applicant_name": "Banc d'essai",
                "received_at": at,
                "service_code": "voirie",
                "status": "recue",
                "status_label": "Reçue",
                "phase": "qualification",
                "assigned_at": at,
                "rule": "banc d'essai",
            }
        )
        batch_i.append(
            {
                "id": incident_id,
                "tenant": "admiville",
                "procedure_code": PROCEDURE,
                "request_id": request_id,
                "latitude": lat,
                "longitude": lon,
                "opened_at": at,
                "reporters": 1,
            }
        )
        batch_r.append(
            {
                "request_id": request_id,
                "incident_id": incident_id,
                "duplicate": False,
                "latitude": lat,
                "longitude": lon,
            }
        )
        if len(batch_a) == 5000:
            await flush()
    if batch_a:
        await flush()
    return places


def report(lat: float | None, lon: float | None, n: int) -> Any:
    request_id = uuid.uuid4()
    return RequestReceived(
        request_id=request_id,
        tracking_code=f"NEW-{n:010d}",
        procedure_code=PROCEDURE,
        procedure_title="Signalement",
        procedure_kind="signalement",
        channel="web",
        received_at=NOW,
        reception_date=NOW.date(),
        applicant=ApplicantContact(name="Banc", email=None, phone=None, postal_address=None),
        contact_preference="email",
        payload={},
        location=None if lat is None else {"latitude": lat, "longitude": lon},
        abusive=False,
    ).envelope(tenant="admiville", subject=str(request_id), occurred_at=NOW)


async def measure(label: str, db: Database, args: argparse.Namespace) -> None:
    rng = random.Random(30)
    started = time.perf_counter()
    places = await seed(db, args.incidents, rng)
    seeded = time.perf_counter() - started
    handle = idempotent(db, "bench.dispatch", service.on_request_received, ServiceMetrics("b"))
    timings: list[float] = []
    # Interleaved with reports without a place (the same consumer, no R30 look-up), so
    # that both meet the same cache and the same background work.
    baseline: list[float] = []
    for n in range(args.reports):
        # Even: 10 m from a known incident (joins it); odd: anywhere in town.
        if n % 2 == 0:
            lat, lon = places[rng.randrange(len(places))]
            lat += 10 * DEG_PER_M
        else:
            lat, lon = _place(rng)
        for located, into in ((True, timings), (False, baseline)):
            event = report(lat, lon, n) if located else report(None, None, args.reports + n)
            t0 = time.perf_counter()
            await handle(event)
            into.append((time.perf_counter() - t0) * 1000)
    async with db.sessions() as session:
        joined = await session.scalar(
            sa.select(sa.func.count()).select_from(report_table).where(report_table.c.duplicate)
        )
        box = incidents.bounding_box(*places[0], 50)
        since = NOW - timedelta(days=incidents.DEFAULT_WINDOW_DAYS)
        query = repository.open_incidents_query("admiville", PROCEDURE, since, box)
        compiled = query.compile(db.engine, compile_kwargs={"literal_binds": True})
        explain = "EXPLAIN ANALYZE" if db.is_postgres else "EXPLAIN QUERY PLAN"
        rows = await session.execute(sa.text(f"{explain} {compiled}"))
        plan = "\n".join(f"    {r[-1]}" for r in rows)
    baseline.sort()
    timings.sort()
    print(
        f"{label:<10} {args.incidents} open incidents (seeded in {seeded:.1f} s), "
        f"{args.reports} reports routed, {joined} joined an incident\n"
        f"           per report: p50 {statistics.median(timings):.2f} ms, "
        f"p99 {timings[int(len(timings) * 0.99) - 1]:.2f} ms, max {timings[-1]:.2f} ms\n"
        f"           same consumer, no location, interleaved: "
        f"p50 {statistics.median(baseline):.2f} ms, "
        f"p99 {baseline[int(len(baseline) * 0.99) - 1]:.2f} ms"
    )
    print("           plan of the bounding-box look-up:\n" + plan)
    await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--reports", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="guichet-bench-") as tmp:
        root = Path(tmp)
        postgres = LocalPostgres(root / "pg").start()
        try:
            await measure("postgres", Database(postgres.create_database("bench")), args)
        finally:
            postgres.stop()
        await measure("sqlite", Database(f"sqlite:///{root / 'routing.sqlite3'}"), args)


if __name__ == "__main__":
    asyncio.run(main())
