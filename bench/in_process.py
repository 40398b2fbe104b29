"""Intake's submission in one process, without HTTP: the event loop's own CPU per request.

Under wrk, figures move by a quarter with this machine's drift. This drives intake's app
through ASGI directly (the real app, its middlewares, lane, PostgreSQL and Kafka relay),
with `--concurrency` submissions in flight, and reads the CPU time of the event loop's
thread (`time.thread_time`), which is what bounds a server's throughput, and of the
whole process. The same body as `intake_post.py`, each from its own sender. No uvicorn:
its HTTP work (about 0.15–0.2 ms a request here, the same for every app) is not counted.
`--stages` also times the grouped reads and writes (`Grouped`): how many requests each
group carried, and how much of the time one was in flight. It asserts nothing.

    .venv/bin/python bench/in_process.py --requests 4000 --rounds 3 --stages
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from intake_post import BODY_TEXT, DATABASES, VARY, intake_environment

from guichet_plumbing.db import Grouped
from guichet_plumbing.localinfra import LocalBroker, LocalPostgres

Stats = dict[str, list[float]]


async def drive(app: Any, count: int, concurrency: int, tag: str) -> dict[int, int]:
    """`count` submissions, `concurrency` at a time; returns how many got each status."""
    slots = asyncio.Semaphore(concurrency)
    statuses: dict[int, int] = {}

    async def one(n: int) -> None:
        body = BODY_TEXT.replace(f"{VARY}@", f"{VARY}+{tag}.{n}@").encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/requests",
            "raw_path": b"/v1/requests",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 10_000 + n % 50_000),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect: the client waits for its answer
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        async with slots:
            await app(scope, receive, send)

    await asyncio.gather(*(one(n) for n in range(count)))
    return statuses


def timed_groups(intake: Any) -> Stats:
    """Each `Grouped` of the service timed: groups, requests carried, seconds in flight."""
    stats: Stats = {}
    for name, grouped in vars(intake).items():
        if not isinstance(grouped, Grouped):
            continue
        counts = stats[name] = [0, 0, 0.0]
        inner: Callable[[list[Any]], Awaitable[list[Any]]] = grouped.run

        async def run(group: list[Any], inner: Any = inner, counts: Any = counts) -> list[Any]:
            started = time.perf_counter()
            try:
                return list(await inner(group))
            finally:
                counts[0] += 1
                counts[1] += len(group)
                counts[2] += time.perf_counter() - started

        grouped.run = run
    return stats


async def lifespan_started(app: Any) -> tuple[asyncio.Queue[dict[str, str]], asyncio.Task[None]]:
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"intake did not start: {started}")
    return inbox, task


async def measure(app: Any, args: argparse.Namespace) -> None:
    inbox, task = await lifespan_started(app)
    stats = timed_groups(app.state.intake) if args.stages else {}
    warm = await drive(app, args.requests // 2, args.concurrency, "warm")
    print(f"warm-up: {args.requests // 2} submissions, statuses {warm}")
    loop_ms: list[float] = []
    for n in range(1, args.rounds + 1):
        for counts in stats.values():
            counts[:] = [0, 0, 0.0]
        thread0, process0, wall0 = time.thread_time(), time.process_time(), time.perf_counter()
        statuses = await drive(app, args.requests, args.concurrency, f"r{n}")
        thread1, process1, wall1 = time.thread_time(), time.process_time(), time.perf_counter()
        loop_ms.append((thread1 - thread0) / args.requests * 1000)
        print(
            f"round {n}: event loop {loop_ms[-1]:.3f} ms CPU a request, whole process "
            f"{(process1 - process0) / args.requests * 1000:.3f} ms, "
            f"{args.requests / (wall1 - wall0):.0f} req/s, statuses {statuses}"
        )
        for name, (groups, carried, seconds) in stats.items():
            if groups:
                print(
                    f"  {name}: {groups:.0f} groups of {carried / groups:.1f} on average, "
                    f"{seconds / groups * 1000:.2f} ms each, one in flight "
                    f"{seconds / (wall1 - wall0) * 100:.0f} % of the time"
                )
    print(
        f"event loop CPU a request: best {min(loop_ms):.3f} ms, "
        f"median {statistics.median(loop_ms):.3f} ms over {args.rounds} round(s)"
    )
    await inbox.put({"type": "lifespan.shutdown"})
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="submissions per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--stages", action="store_true", help="time the grouped round trips")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="guichet-in-process-"))
    postgres = LocalPostgres(tmp / "pgdata")
    broker = LocalBroker()
    try:
        postgres.start()
        broker.start(log_path=tmp / "tansu.log")
        db_url = postgres.create_database(DATABASES[1])
        os.environ.update(intake_environment(db_url, broker, tmp / "data"))
        # Imported once the environment names the database: the app reads it when built.
        from guichet_launcher.services import BY_NAME, long_lived

        app = long_lived(BY_NAME["intake"].create())
        # The loop the server runs on (uvicorn picks uvloop when it is installed).
        import uvloop

        uvloop.run(measure(app, args))
    finally:
        broker.stop()
        postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
