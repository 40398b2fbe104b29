"""`python -m guichet_launcher run|serve|distributed|contracts`."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn

from guichet_plumbing.observability import configure_logging
from guichet_plumbing.server import BoundedHead


def _port(default: int) -> int:
    return int(os.environ.get("GUICHET_PORT", default))


def embedded_urls(host: str, port: int, environ: Mapping[str, str]) -> dict[str, str]:
    """Routing files Open311 reports through intake's public API, and intake's links
    (follow links, receipts' verification address, e-mails) point to it: in the embedded
    system, this very server, unless the environment names another address."""
    intake = f"http://{host}:{port}/intake"
    return {
        setting: intake
        for setting, variable in (
            ("intake_url", "GUICHET_ROUTING_INTAKE_URL"),
            ("public_url", "GUICHET_INTAKE_PUBLIC_URL"),
        )
        if variable not in environ
    }


def run_embedded(args: argparse.Namespace) -> None:
    from guichet_launcher.embedded import create_embedded_app
    from guichet_launcher.services import long_lived

    configure_logging(os.environ.get("GUICHET_LOG_LEVEL", "INFO"))
    data_dir = Path(os.environ.get("GUICHET_DATA_DIR", "data"))
    port = args.port or _port(8000)
    app = long_lived(create_embedded_app(data_dir, **embedded_urls(args.host, port, os.environ)))
    print(
        f"Guichet (embarqué) sur http://{args.host}:{port} — données dans {data_dir.resolve()}",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=port, log_level="warning", http=BoundedHead)


def serve_one(args: argparse.Namespace) -> None:
    """One service alone: the production entry point (one container per service)."""
    from guichet_launcher.services import BY_NAME, SERVICE_ENV, long_lived

    spec = BY_NAME[args.service]
    configure_logging(os.environ.get("GUICHET_LOG_LEVEL", "INFO"))
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port or spec.port,
        "log_level": "warning",
        # At warning the access log writes nothing; off, uvicorn skips building its lines.
        "access_log": False,
        "proxy_headers": True,
        "http": BoundedHead,
    }
    if args.workers > 1:
        # One event loop per core: each worker process builds its own app (and relay).
        os.environ[SERVICE_ENV] = spec.name
        uvicorn.run(
            "guichet_launcher.services:app_from_environment",
            factory=True,
            workers=args.workers,
            **options,
        )
    else:
        uvicorn.run(long_lived(spec.create()), **options)


def run_distributed(args: argparse.Namespace) -> None:
    """Production topology on one machine: local PostgreSQL and Kafka broker, four processes."""
    from guichet_launcher.services import BY_NAME, SERVICES
    from guichet_plumbing.localinfra import local_infra

    root = Path(os.environ.get("GUICHET_DATA_DIR", "data")).resolve() / "distributed"
    root.mkdir(parents=True, exist_ok=True)
    with local_infra(root) as (postgres, broker):
        children: list[subprocess.Popen[bytes]] = []
        for spec in SERVICES:
            env = dict(os.environ)
            env.update(
                {
                    f"{spec.env_prefix}DATABASE_URL": postgres.ensure_database(
                        f"guichet_{spec.name}"
                    ),
                    "GUICHET_BUS": "kafka",
                    "GUICHET_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                    "GUICHET_DATA_DIR": str(root),
                    "GUICHET_ROUTING_INTAKE_URL": f"http://{args.host}:{BY_NAME['intake'].port}",
                }
            )
            env.setdefault(
                "GUICHET_INTAKE_PUBLIC_URL", f"http://{args.host}:{BY_NAME['intake'].port}"
            )
            children.append(
                subprocess.Popen(  # noqa: S603 - our own interpreter and module
                    [
                        sys.executable,
                        "-m",
                        "guichet_launcher",
                        "serve",
                        spec.name,
                        "--host",
                        args.host,
                        "--port",
                        str(spec.port),
                    ],
                    env=env,
                )
            )
            print(
                f"{spec.name:<14} http://{args.host}:{spec.port}{'':4}(PID {children[-1].pid})",
                flush=True,
            )
        print(
            f"PostgreSQL : {postgres.url('guichet_intake')}\nKafka : {broker.bootstrap_servers}"
            "\nCtrl-C pour arrêter.",
            flush=True,
        )
        stop = False

        def on_signal(_signum: int, _frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            while not stop and all(c.poll() is None for c in children):
                time.sleep(0.5)
        finally:
            for child in children:
                child.terminate()
            for child in children:
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()
        failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM)]
        if failed and not stop:
            sys.exit(1)


def export_contracts(args: argparse.Namespace) -> None:
    from guichet_launcher.contracts import check, write

    root = Path(args.root)
    if args.check:
        drift = check(root)
        if drift:
            print(
                "Contrats désynchronisés du code (lancez `make contracts`) :\n  "
                + "\n  ".join(drift),
                file=sys.stderr,
            )
            sys.exit(1)
        print("contracts/ à jour")
    else:
        for path in write(root):
            print(path)


def make_keys(args: argparse.Namespace) -> None:
    """A token signing key set for GUICHET_AUTH_SIGNING_KEYS; with --previous, a rotation."""
    from guichet_plumbing.auth import generate_keys

    print(generate_keys(args.previous))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="guichet_launcher")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="tout le système dans un processus (SQLite, bus interne)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=0)
    run.set_defaults(func=run_embedded)
    serve = sub.add_parser("serve", help="un seul service")
    serve.add_argument("service", choices=["intake", "routing", "notifications", "gateway"])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--workers", type=int, default=1, help="processus (un par cœur)")
    serve.set_defaults(func=serve_one)
    dist = sub.add_parser("distributed", help="quatre processus, PostgreSQL et Kafka locaux")
    dist.add_argument("--host", default="127.0.0.1")
    dist.set_defaults(func=run_distributed)
    contracts = sub.add_parser("contracts", help="exporte OpenAPI et schémas d'événements")
    contracts.add_argument("--root", default="contracts")
    contracts.add_argument("--check", action="store_true", help="échoue si contracts/ diffère")
    contracts.set_defaults(func=export_contracts)
    keys = sub.add_parser("keys", help="clés de signature des jetons (nouvelles ou renouvelées)")
    keys.add_argument("--previous", help="jeu de clés en vigueur, gardé pour vérifier")
    keys.set_defaults(func=make_keys)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
