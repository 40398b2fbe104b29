"""Two versions of intake side by side, with the bare baseline, in one invocation.

This machine's speed drifts by a quarter within a minute, so two invocations of
`intake_post.py` cannot tell one version of the code from another unless they differ by
more than that. Here both versions (this checkout, and `--against REV` served from a
temporary git worktree through `PYTHONPATH`) and the baseline are up together on one
PostgreSQL and one broker, each measured in turn for short runs, the order rotated, so
each cycle compares the three within a few seconds of each other. It asserts nothing.

    .venv/bin/python bench/paired.py --against 042c4fd --cycles 6 --duration 10

Even so, six cycles of 10 s only resolve differences of about 10 %: the same code
served twice has given medians 2 % apart, and twice 11 % apart (`bench/README.md`).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from intake_post import (
    DATABASES,
    SystemResult,
    baseline_server,
    intake_server,
    log,
)

from guichet_plumbing.localinfra import LocalBroker, LocalPostgres

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("baseline", "this", "against")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="the git revision to compare with")
    parser.add_argument("--cycles", type=int, default=6)
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds before each run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=10)
    parser.add_argument("--wrk", default="wrk")
    args = parser.parse_args()
    # What `intake_post.py`'s helpers read besides the above.
    args.workers, args.same_sender = 1, False
    if not shutil.which(args.wrk):
        print("wrk is missing: `make wrk` installs the Debian package.", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="guichet-paired-"))
    worktree = tmp / "against"
    git = ["git", "-C", str(ROOT)]
    subprocess.run([*git, "worktree", "add", "--detach", str(worktree), args.against], check=True)
    postgres = LocalPostgres(tmp / "pgdata")
    broker = LocalBroker()
    results: dict[str, list[SystemResult]] = {name: [] for name in SYSTEMS}
    try:
        postgres.start()
        broker.start(log_path=tmp / "tansu.log")
        with ExitStack() as up:
            runs = {
                "baseline": up.enter_context(baseline_server(postgres, tmp, args)),
                "this": up.enter_context(
                    # Served through PYTHONPATH too: both versions are loaded alike.
                    intake_server(
                        postgres,
                        broker,
                        tmp,
                        args,
                        system="this",
                        database=DATABASES[1],
                        source=ROOT,
                    )
                ),
                "against": up.enter_context(
                    intake_server(
                        postgres,
                        broker,
                        tmp,
                        args,
                        system="against",
                        database="bench_against",
                        source=worktree,
                    )
                ),
            }
            for cycle in range(args.cycles):
                # Each system in each place of the order as often as the others.
                shift = cycle % len(SYSTEMS)
                order = SYSTEMS[shift:] + SYSTEMS[:shift]
                for name in order if cycle % 2 == 0 else order[::-1]:
                    log(f"cycle {cycle + 1} of {args.cycles}: {name}")
                    result = runs[name]()
                    results[name].append(result)
                    print(
                        f"cycle {cycle + 1} {name:8} {result.wrk.rps:8.1f} req/s, "
                        f"p99 {result.wrk.p99_ms:6.1f} ms, server CPU "
                        f"{result.server_cpu_ms_per_request:.3f} ms/request, "
                        f"errors {result.wrk.errors}",
                        flush=True,
                    )
    finally:
        broker.stop()
        postgres.stop()
        subprocess.run([*git, "worktree", "remove", "--force", str(worktree)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nthis checkout against {args.against}, {args.cycles} cycles of {args.duration} s:")
    for name, measured in results.items():
        print(
            f"{name:8} median {statistics.median(r.wrk.rps for r in measured):8.1f} req/s, "
            f"p99 {statistics.median(r.wrk.p99_ms for r in measured):6.1f} ms, server CPU "
            f"{statistics.median(r.server_cpu_ms_per_request for r in measured):.3f} ms/request"
        )
    for name in ("this", "against"):
        ratios = [
            mine.wrk.rps / base.wrk.rps
            for mine, base in zip(results[name], results["baseline"], strict=True)
        ]
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"{name:8} / baseline per cycle: {shown} (median {statistics.median(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
