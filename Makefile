# Guichet — every command a developer or CI needs. Only Python 3.11 must be present:
# uv comes from PyPI into .tools/, everything else from the lock file.

PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run run-distributed test lint format contracts bench bench-inbox promtool wrk clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv>=0.8,<0.14"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml */*/pyproject.toml launcher/pyproject.toml
	$(UV) sync --all-packages --locked --python $(PYTHON)
	touch $@

install: $(VENV)/.synced

## The whole system in one process: SQLite, in-process bus, http://127.0.0.1:$${GUICHET_PORT:-8000}
run: install
	$(PY) -m guichet_launcher run

## Production topology on one machine: local PostgreSQL + Kafka broker, services on 8001–8004
run-distributed: install
	$(PY) -m guichet_launcher distributed

## Full test suite: starts PostgreSQL, a Kafka-protocol broker and SMTP servers itself
test: install promtool
	$(PY) -m pytest -n 2 --dist loadfile

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m guichet_launcher contracts --check

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

contracts: install
	$(PY) -m guichet_launcher contracts

bench: install wrk
	$(PY) bench/intake_post.py
	$(PY) bench/inbox.py

## The agents' inbox on 1,000,000 requests in PostgreSQL: p50/p99 of the ten common views
bench-inbox: install
	$(PY) bench/inbox.py

# promtool checks alert rules and /metrics output in the tests (Debian package `prometheus`).
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "promtool missing: installing Debian package prometheus"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# wrk drives the HTTP benchmarks (Debian package `wrk`).
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "wrk missing: installing Debian package wrk"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null; }

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
