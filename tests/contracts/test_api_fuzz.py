"""Schemathesis 4 against each service's own OpenAPI, over real HTTP, with lifespans running.

Every generated request must get a documented status, a body matching the schema,
and never a 5xx: bad input is a 4xx with problem details.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.schemas import BaseSchema as BaseOpenAPISchema
from schemathesis.specs.openapi.checks import positive_data_acceptance

from guichet_launcher.services import BY_NAME
from guichet_plumbing.localinfra import free_port
from tests.identity import staff

# Schema-valid input may still break a business rule (unknown tenant, a contact preference
# without the matching address, a forged cursor): those 4xx answers are right, so the
# "positive data accepted" check is off. Every other check stays on, including
# "schema-violating data rejected" and "no 5xx".
# Calls carry a token of every role but the DPO's: the fuzzing reaches the handlers (the
# authorisation matrix, not this test, proves who is refused).
CHECKS = {"excluded_checks": [positive_data_acceptance], "headers": staff()}

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# A transfer's body (`application/jose`): a compact JWS (three base64url parts) or not quite.
schemathesis.openapi.media_type(
    "application/jose",
    st.from_regex(r"[A-Za-z0-9_-]{0,60}(\.[A-Za-z0-9_-]{0,60}){0,3}", fullmatch=True).map(
        str.encode
    ),
)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _serve(name: str, data_dir: Path, **settings: object) -> Iterator[str]:
    # One token makes every call: the write limiter would answer 429 to most of them.
    app = BY_NAME[name].create(data_dir=data_dir / name, write_rate_limit=None, **settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, f"{name} did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def intake_url(data_root: Path) -> Iterator[str]:
    yield from _serve("intake", data_root)


def _schema(url: str) -> BaseOpenAPISchema:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    # The token is given with each call (CHECKS): no generated Authorization headers.
    schema.config.generation.update(with_security_parameters=False)
    # A string past its documented length can also be past the body limit (a long enough
    # one in escaped characters): refused before it is read, 413 is the right refusal too.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    return schema


@pytest.fixture(scope="module")
def intake_schema(intake_url: str) -> BaseOpenAPISchema:
    return _schema(intake_url)


@pytest.fixture(scope="module")
def routing_schema(data_root: Path, intake_url: str) -> Iterator[BaseOpenAPISchema]:
    # Open311 reports are filed through intake's API: routing gets a real intake.
    for url in _serve("routing", data_root, intake_url=intake_url):
        yield _schema(url)


@pytest.fixture(scope="module")
def notifications_schema(data_root: Path) -> Iterator[BaseOpenAPISchema]:
    for url in _serve("notifications", data_root):
        yield _schema(url)


@pytest.fixture(scope="module")
def gateway_schema(data_root: Path) -> Iterator[BaseOpenAPISchema]:
    for url in _serve("gateway", data_root):
        yield _schema(url)


intake = schemathesis.pytest.from_fixture("intake_schema")
routing = schemathesis.pytest.from_fixture("routing_schema")
notifications = schemathesis.pytest.from_fixture("notifications_schema")
gateway = schemathesis.pytest.from_fixture("gateway_schema")


@intake.parametrize()
@FUZZ
def test_intake_api_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate(**CHECKS)


@routing.parametrize()
@FUZZ
def test_routing_api_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate(**CHECKS)


@notifications.parametrize()
@FUZZ
def test_notifications_api_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate(**CHECKS)


@gateway.parametrize()
@FUZZ
def test_gateway_api_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate(**CHECKS)
