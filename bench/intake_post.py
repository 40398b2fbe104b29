"""Throughput and latency of intake's `POST /v1/requests` on PostgreSQL, against a baseline.

`make bench` runs this. One invocation starts a throw-away PostgreSQL and a Tansu
broker, the bare baseline (`baseline_app.py`: same uvicorn, one INSERT) and intake as
its real server process, then drives them in turn with wrk at the same concurrency,
for a few rounds, each system going first every other round. It prints every round's
figures and ratio, and the ratios' median and spread, and writes them to
`bench/results/`. It asserts no target: it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from guichet_plumbing.localinfra import LocalBroker, LocalPostgres, free_port

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LUA_SCRIPT = BENCH_DIR / "post.lua"
HOST = "127.0.0.1"
DATABASES = ("bench_baseline", "bench_intake")

BODY: dict[str, Any] = {
    "tenant": "admiville",
    "procedure": "reservation-salle",
    "channel": "web",
    "applicant": {"name": "Camille Martin", "email": "camille.martin@example.org"},
    "contact_preference": "email",
    "payload": {"salle": "Salle des fêtes", "personnes": 80},
}
BODY_TEXT = json.dumps(BODY, ensure_ascii=False)
# post.lua appends "+<thread>.<n>" to this local part so each request has its own sender.
VARY = "camille.martin"
_RUNS = itertools.count(1)
_CHECKS = itertools.count(1)


@dataclass
class WrkRun:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: dict[str, int]

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


@dataclass
class SystemResult:
    system: str
    wrk: WrkRun
    rows: int
    # CPU of the server's whole process tree (every worker, the relay inside each).
    server_cpu_ms_per_request: float
    # Every process involved, by role: server, postgres (all backends), broker (intake).
    cpu_ms_per_request: dict[str, float]
    machine_cpu_busy_pct: float
    # Time the hypervisor gave this virtual machine's cores to others: the neighbours' load.
    machine_cpu_steal_pct: float
    loadavg_1min_after: float
    notes: dict[str, Any] = field(default_factory=dict)


# -- processes ---------------------------------------------------------------------------------


@contextmanager
def server(
    name: str, argv: list[str], env: dict[str, str], log: Path, ready: Callable[[], bool]
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server process, wait until `ready()` holds, and always stop it."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited at start (code {proc.returncode}):\n{tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready within 60 s:\n{tail(log)}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def failed(name: str, proc: subprocess.Popen[bytes], log: Path, exc: Exception) -> RuntimeError:
    """A measurement of `name` failed: say so with its server's state and log, once."""
    state = "still running" if proc.poll() is None else f"exited ({proc.returncode})"
    return RuntimeError(f"{name}: {exc}\n{name}'s server was {state}; its log ends:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def answers(url: str, method: str = "GET", body: bytes | None = None) -> Callable[[], bool]:
    """A readiness probe: the server answered `url` at all (any status but a refused socket)."""
    return lambda: http(method, url, body)[0] != 0


def _stat(pid: int) -> list[str]:
    # Fields after the command name: state is [0], ppid [1], utime [11] ... cstime [14].
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_cpu_by_title(root: int) -> dict[str, float]:
    """CPU seconds of `root` and every live descendant, by process title, plus what their
    reaped children used (under the parent's title).

    Workers, PostgreSQL backends and the like all count; a child that exits during the
    run moves its time into its parent's cutime/cstime, so nothing is lost or doubled.
    """
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    ticks: dict[str, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        found = stats.get(pid)
        if found is None:
            continue
        title = _title(pid)
        ticks[title] = ticks.get(title, 0) + sum(int(found[i]) for i in (11, 12, 13, 14))
        todo.extend(children.get(pid, []))
    return {title: n / os.sysconf("SC_CLK_TCK") for title, n in ticks.items()}


def _title(pid: int) -> str:
    """`postgres: checkpointer` stays; a backend's `postgres: user db [local] ...` is `backend`."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().split()
    except (FileNotFoundError, ProcessLookupError):
        return "gone"
    if words[:1] != ["postgres:"]:
        return "process"
    if len(words) > 2 and words[2].startswith("bench_"):
        return "backend"
    return " ".join(w for w in words[1:3] if w.isalpha())


def machine_cpu() -> tuple[int, int, int]:
    """(busy, stolen, total) jiffies of the whole machine: whether the 2 cores saturate,
    and how much of them the hypervisor gave to other machines."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, values[7], sum(values)


# -- database ----------------------------------------------------------------------------------


async def _query(url: str, sql: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def query(url: str, sql: str) -> Any:
    return asyncio.run(_query(url, sql))


def settled_count(url: str, sql: str) -> int:
    """Row count once it stops moving: requests in flight when wrk stops still commit."""
    last = int(query(url, sql))
    for _ in range(20):
        time.sleep(0.5)
        now = int(query(url, sql))
        if now == last:
            return now
        last = now
    return last


# -- load --------------------------------------------------------------------------------------


def wrk(url: str, args: argparse.Namespace, duration: int) -> tuple[WrkRun, str]:
    env = dict(os.environ, WRK_BODY=BODY_TEXT)
    if not args.same_sender:
        env["WRK_VARY"] = VARY
        env["WRK_RUN"] = str(next(_RUNS))
    argv = [
        args.wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        # wrk takes whole seconds only.
        f"-d{duration}s",
        f"--timeout={args.timeout}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"no WRK_JSON line in wrk output:\n{done.stdout}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds = raw["duration_us"] / 1e6
    return (
        WrkRun(
            requests=raw["requests"],
            duration_s=round(seconds, 3),
            rps=round(raw["requests"] / seconds, 1),
            p50_ms=raw["p50_us"] / 1000,
            p75_ms=raw["p75_us"] / 1000,
            p90_ms=raw["p90_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            max_ms=raw["max_us"] / 1000,
            # wrk counts HTTP statuses above 399 here; neither system redirects.
            non_2xx=raw["status"],
            socket_errors={k: raw[k] for k in ("connect", "read", "write", "timeout")},
        ),
        done.stdout,
    )


def measure(
    system: str,
    proc: subprocess.Popen[bytes],
    url: str,
    db_url: str,
    args: argparse.Namespace,
    others: dict[str, int],
    postgres: LocalPostgres,
) -> SystemResult:
    """`others`: the other processes whose CPU to report, by role (root PIDs)."""
    # A sender of its own: the same body from one sender before every round would be an
    # R9 repetition by the third.
    check = {
        **BODY,
        "applicant": {**BODY["applicant"], "email": f"{VARY}+check{next(_CHECKS)}@example.org"},
    }
    status, answer = http("POST", url, json.dumps(check).encode())
    if status != 201:
        raise RuntimeError(f"{system}: check POST answered {status}, not 201: {answer[:500]!r}")
    log(f"{system}: warm-up {args.warmup} s (not counted)")
    wrk(url, args, args.warmup)
    count_sql = "SELECT count(*) FROM requests"
    before = settled_count(db_url, count_sql)
    quiesce(postgres)
    log(f"{system}: {args.duration} s at {args.connections} connections")
    roots = {"server": proc.pid, **others}
    cpu0, (busy0, stolen0, total0) = (
        {k: tree_cpu_by_title(p) for k, p in roots.items()},
        machine_cpu(),
    )
    run, text = wrk(url, args, args.duration)
    cpu1, (busy1, stolen1, total1) = (
        {k: tree_cpu_by_title(p) for k, p in roots.items()},
        machine_cpu(),
    )
    load_after = os.getloadavg()[0]
    rows = settled_count(db_url, count_sql) - before

    def ms(seconds: float) -> float:
        return round(seconds * 1000 / max(run.requests, 1), 3)

    per_request = {k: ms(sum(cpu1[k].values()) - sum(cpu0[k].values())) for k in roots}
    # PostgreSQL's share by process kind: backends (the statements) or background work.
    postgres_parts = {
        title: ms(seconds - cpu0["postgres"].get(title, 0.0))
        for title, seconds in cpu1["postgres"].items()
        if seconds - cpu0["postgres"].get(title, 0.0) > 0
    }
    result = SystemResult(
        system=system,
        wrk=run,
        rows=rows,
        server_cpu_ms_per_request=per_request["server"],
        cpu_ms_per_request=per_request,
        machine_cpu_busy_pct=round(100 * (busy1 - busy0) / max(total1 - total0, 1), 1),
        machine_cpu_steal_pct=round(100 * (stolen1 - stolen0) / max(total1 - total0, 1), 1),
        loadavg_1min_after=round(load_after, 2),
        notes={"wrk_output": text, "postgres_cpu_ms_per_request": postgres_parts},
    )
    if run.errors:
        shout(f"{system}: {run.errors} errors: {run.non_2xx} non-2xx, sockets {run.socket_errors}")
    return result


# -- the two systems ---------------------------------------------------------------------------


@contextmanager
def baseline_server(
    postgres: LocalPostgres, tmp: Path, args: argparse.Namespace
) -> Iterator[Callable[[], SystemResult]]:
    """The baseline's server, up for the whole invocation; each call measures it once."""
    db_url = postgres.create_database(DATABASES[0])
    port = free_port()
    url = f"http://{HOST}:{port}/v1/requests"
    env = dict(os.environ, BENCH_BASELINE_DATABASE_URL=db_url)
    # The flags `guichet_launcher serve` gives uvicorn.run, on the command line.
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "baseline_app:app"]
    argv += ["--host", HOST, "--port", str(port), "--log-level", "warning"]
    argv += ["--no-access-log", "--proxy-headers"]
    if args.workers > 1:
        argv += ["--workers", str(args.workers)]
    # No /ready here: an empty-bodied POST answered at all (400) means it is up.
    probe = answers(url, "POST", b"")
    with server("baseline", argv, env, tmp / "baseline.log", probe) as proc:
        logged = LogReader(tmp / "baseline.log")

        def run() -> SystemResult:
            try:
                result = measure(
                    "baseline",
                    proc,
                    url,
                    db_url,
                    args,
                    {"postgres": postgres_pid(postgres)},
                    postgres,
                )
            except Exception as exc:
                raise failed("baseline", proc, tmp / "baseline.log", exc) from exc
            logged.attach(result)
            return result

        yield run


def intake_environment(db_url: str, broker: LocalBroker, data_dir: Path) -> dict[str, str]:
    """What intake is configured by when measured: its database, Kafka, nothing logged."""
    return {
        "GUICHET_INTAKE_DATABASE_URL": db_url,
        "GUICHET_BUS": "kafka",
        "GUICHET_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "GUICHET_DATA_DIR": str(data_dir),
        "GUICHET_LOG_LEVEL": "WARNING",
        # One client address: the write limiter would measure itself.
        "GUICHET_WRITE_RATE_LIMIT": "",
    }


@contextmanager
def intake_server(
    postgres: LocalPostgres,
    broker: LocalBroker,
    tmp: Path,
    args: argparse.Namespace,
    *,
    system: str = "intake",
    database: str = DATABASES[1],
    source: Path | None = None,
) -> Iterator[Callable[[], SystemResult]]:
    """Intake's real server process, up for the whole invocation; each call measures it once.

    `source`: a checkout whose code to serve instead of this one (`paired.py`)."""
    db_url = postgres.create_database(database)
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = dict(os.environ, **intake_environment(db_url, broker, tmp / f"{system}-data"))
    if source is not None:
        # Ahead of the virtualenv's own paths, which lead to this checkout.
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in source_paths(source))
    log_path = tmp / f"{system}.log"
    argv = [sys.executable, "-m", "guichet_launcher", "serve", "intake"]
    argv += ["--host", HOST, "--port", str(port), "--workers", str(args.workers)]

    def ready() -> bool:
        return http("GET", f"{base}/ready")[0] == 200

    with server(system, argv, env, log_path, ready) as proc:
        others = {"postgres": postgres_pid(postgres), "broker": broker_pid(broker)}
        logged = LogReader(log_path)
        flagged_before = 0

        def run() -> SystemResult:
            nonlocal flagged_before
            try:
                result = measure(
                    system,
                    proc,
                    f"{base}/v1/requests",
                    db_url,
                    args,
                    others,
                    postgres,
                )
            except Exception as exc:
                raise failed(system, proc, log_path, exc) from exc
            # The relay publishes to Kafka behind the responses: show whether it kept up
            # (counted once the request rows settled, about a second after wrk stopped).
            # The drain ends before the next measured run starts.
            pending = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            result.notes["outbox_backlog_after_run"] = int(query(db_url, pending))
            start = time.monotonic()
            while query(db_url, pending) and time.monotonic() - start < 60:
                time.sleep(0.5)
            result.notes["outbox_drain_s"] = round(time.monotonic() - start, 1)
            result.notes["outbox_pending_after_drain"] = int(query(db_url, pending))
            # R9 flags repeated content or floods from one sender: that path issues no
            # receipt (counted for this round: warm-up, check request and measured run).
            flagged = int(query(db_url, "SELECT count(*) FROM requests WHERE abusive"))
            result.notes["flagged_abusive"] = flagged - flagged_before
            flagged_before = flagged
            logged.attach(result)
            return result

        yield run


def source_paths(checkout: Path) -> list[Path]:
    """Where the packages of a checkout live (`PYTHONPATH` serves them from there)."""
    return sorted(
        [*checkout.glob("libs/*/src"), *checkout.glob("services/*/src"), checkout / "launcher/src"]
    )


def quiesce(postgres: LocalPostgres) -> None:
    """Every system's database vacuumed, then a checkpoint: what the previous run left
    (intake's published outbox rows are dead tuples, dirty pages) is cleaned up before
    the next run is measured, not by autovacuum and the checkpointer during it."""
    found = query(
        postgres.url("postgres"),
        "SELECT string_agg(datname, ' ') FROM pg_database WHERE datname LIKE 'bench%'",
    )
    for database in (found or "").split():
        query(postgres.url(database), "VACUUM")
    query(postgres.url("postgres"), "CHECKPOINT")


def postgres_pid(postgres: LocalPostgres) -> int:
    # The postmaster: every backend is its child.
    return int((postgres.pgdata / "postmaster.pid").read_text().split()[0])


def broker_pid(broker: LocalBroker) -> int:
    # The bench reads the PID of the broker it started itself.
    process = broker._process
    if process is None:
        raise RuntimeError("broker not started")
    return process.pid


class LogReader:
    """Both servers log at WARNING and above only: any line there deserves a look. Each
    round reports the lines its server wrote since the previous round."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.seen = 0

    def attach(self, result: SystemResult) -> None:
        lines = self.log.read_text(errors="replace").splitlines()
        new, self.seen = lines[self.seen :], len(lines)
        result.notes["server_log_lines"] = len(new)
        if new:
            result.notes["log_tail"] = "\n".join(new[-30:])


# -- report ------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"· {message}", file=sys.stderr, flush=True)


def shout(message: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n!! {message}\n!! these figures are NOT a valid measurement\n{bar}\n")


def table(rounds: list[tuple[SystemResult, SystemResult]]) -> str:
    head = ("round", "system", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "rows", "ratio")
    lines = [head]
    for n, pair in enumerate(rounds, start=1):
        ratio = throughput_ratio(pair)
        for r in pair:
            w = r.wrk
            lines.append(
                (
                    str(n),
                    r.system,
                    f"{w.rps:.1f}",
                    f"{w.p50_ms:.1f}",
                    f"{w.p90_ms:.1f}",
                    f"{w.p99_ms:.1f}",
                    str(w.errors),
                    str(r.rows),
                    f"{ratio:.2f}" if r.system == "intake" else "",
                )
            )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in lines
    )


def throughput_ratio(pair: tuple[SystemResult, SystemResult]) -> float:
    baseline, intake = pair
    return intake.wrk.rps / baseline.wrk.rps if baseline.wrk.rps else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of uncounted warm-up")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="baseline and intake runs in pairs, both servers up throughout: the machine's "
        "drift shows as the spread between rounds instead of inside one ratio",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes, the same number for both systems (uvicorn --workers)",
    )
    parser.add_argument("--timeout", type=int, default=10, help="wrk socket timeout, seconds")
    parser.add_argument(
        "--same-sender",
        action="store_true",
        help="send the byte-identical body every time: intake then flags all but the first "
        "as abusive repetitions (R9), a different and slower path",
    )
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not shutil.which(args.wrk):
        print("wrk is missing: `make wrk` installs the Debian package.", file=sys.stderr)
        return 2

    # Other work on this small machine skews every figure: record how busy it was.
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="guichet-bench-"))
    postgres = LocalPostgres(tmp / "pgdata")
    broker = LocalBroker()
    rounds: list[tuple[SystemResult, SystemResult]] = []
    failure: Exception | None = None
    try:
        log(f"PostgreSQL and Tansu under {tmp}")
        postgres.start()
        broker.start(log_path=tmp / "tansu.log")
        pg_version = query(postgres.url("postgres"), "SHOW server_version")
        sync_commit = query(postgres.url("postgres"), "SHOW synchronous_commit")
        with (
            baseline_server(postgres, tmp, args) as baseline,
            intake_server(postgres, broker, tmp, args) as intake,
        ):
            for n in range(1, args.rounds + 1):
                # Turn about: neither system always runs right after the other.
                log(f"round {n} of {args.rounds}")
                try:
                    if n % 2:
                        first = baseline()
                        rounds.append((first, intake()))
                    else:
                        second = intake()
                        rounds.append((baseline(), second))
                except Exception as exc:
                    # The rounds already measured are still reported, with this failure.
                    if not rounds:
                        raise
                    failure = exc
                    break
    finally:
        broker.stop()
        postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    ratios = [throughput_ratio(pair) for pair in rounds]
    p99s = [intake.wrk.p99_ms for _, intake in rounds]
    machine = {
        "nproc": os.cpu_count(),
        "loadavg_1min_before": round(load_before, 2),
        "postgresql": pg_version,
        "synchronous_commit": sync_commit,
        "wrk_connections": args.connections,
        "wrk_threads": args.threads,
        "server_workers": args.workers,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "wrk_timeout_s": args.timeout,
        "same_sender": args.same_sender,
    }

    print()
    print(table(rounds))
    print()
    print(
        f"intake/baseline throughput: median {statistics.median(ratios):.2f}, "
        f"lowest {min(ratios):.2f}, highest {max(ratios):.2f} over {len(ratios)} round(s); "
        f"intake p99: median {statistics.median(p99s):.1f} ms, "
        f"highest {max(p99s):.1f} ms"
    )
    for n, pair in enumerate(rounds, start=1):
        for r in pair:
            extra = {k: v for k, v in r.notes.items() if k not in ("wrk_output", "log_tail")}
            cpu = ", ".join(f"{k} {v:.2f}" for k, v in r.cpu_ms_per_request.items())
            print(
                f"{n} {r.system}: p75 {r.wrk.p75_ms:.1f} ms, max {r.wrk.max_ms:.1f} ms, "
                f"CPU ms/request ({cpu}), machine CPU busy {r.machine_cpu_busy_pct:.0f}% "
                f"(of which stolen {r.machine_cpu_steal_pct:.1f}%), "
                f"load after {r.loadavg_1min_after:.2f}"
                + "".join(f", {k} {v}" for k, v in extra.items())
            )
    print(
        f"machine: nproc {machine['nproc']} (load {load_before:.2f} before start), "
        f"{args.workers} server worker(s) each, "
        f"PostgreSQL {pg_version} "
        f"(synchronous_commit={sync_commit}), wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s --timeout {args.timeout}s (after {args.warmup} s warm-up), "
        f"{args.rounds} round(s)" + (", same sender every request" if args.same_sender else "")
    )

    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"intake_post-{stamp}.json"
    document = {
        "at": stamp,
        "machine": machine,
        "body": BODY,
        "rounds": [
            {
                "results": [asdict(r) | {"errors": r.wrk.errors} for r in pair],
                "ratio": {
                    "throughput": round(throughput_ratio(pair), 3),
                    "p99": round(pair[1].wrk.p99_ms / pair[0].wrk.p99_ms, 3)
                    if pair[0].wrk.p99_ms
                    else 0.0,
                },
            }
            for pair in rounds
        ],
        "throughput_ratio": {
            "median": round(statistics.median(ratios), 3),
            "lowest": round(min(ratios), 3),
            "highest": round(max(ratios), 3),
        },
        "intake_p99_ms": {"median": statistics.median(p99s), "highest": max(p99s)},
        "failure": None if failure is None else str(failure),
    }
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"results: {out.relative_to(ROOT)}")

    erring = sorted({r.system for pair in rounds for r in pair if r.wrk.errors})
    if erring:
        shout(f"errors during the runs of: {', '.join(erring)}")
    if failure is not None:
        shout(f"round {len(rounds) + 1} of {args.rounds} failed, not measured:\n{failure}")
    return 1 if erring or failure is not None else 0


if __name__ == "__main__":
    sys.exit(main())
