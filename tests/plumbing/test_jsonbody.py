"""JSON bodies: NaN, the infinities and an escaped lone surrogate are malformed JSON (400),
not a server error at the first write; real characters and numbers pass untouched."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from guichet_launcher.services import SERVICES
from guichet_plumbing.auth import api_routes
from guichet_plumbing.bus import InProcessBus
from guichet_plumbing.jsonbody import JsonRoute, loads
from guichet_routing.app import create_app
from guichet_routing.settings import RoutingSettings
from tests.identity import admin
from tests.support import serve


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"a": "\ud800"}',  # high half alone
        rb'{"a": "x\udc00"}',  # low half alone
        rb'{"a": "\udc00\ud800"}',  # both halves, in the wrong order
        rb'{"\ud83d": 1}',  # in a key
        rb'[[{"a": ["\uDBFF"]}]]',  # nested, upper case
    ],
)
def test_a_lone_surrogate_is_malformed_json(raw: bytes) -> None:
    with pytest.raises(json.JSONDecodeError, match="surrogate"):
        loads(raw)


@pytest.mark.parametrize(
    ("raw", "message", "where"),
    [
        # Python's `json.loads` decodes bytes with "surrogatepass": this one read '\ud800'.
        (b'{"a": "\xed\xa0\x80"}', "UTF-8", 7),
        (b'{"a": "\xff"}', "UTF-8", 7),
        (b"[" * 5000, "Nested too deep", 0),
        # Readable by Python, but past what the writers and the events' reader take.
        (b'{"a": ' + b"[" * 64 + b"]" * 64 + b"}", "Nested too deep", 0),
    ],
)
def test_bodies_no_reader_could_take_are_malformed_json(
    raw: bytes, message: str, where: int
) -> None:
    with pytest.raises(json.JSONDecodeError, match=message) as refused:
        loads(raw)
    assert refused.value.pos == where


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b"[1, Infinity]", b'{"a": {"b": [-Infinity]}}'])
def test_nan_and_the_infinities_are_malformed_json(raw: bytes) -> None:
    with pytest.raises(json.JSONDecodeError, match="NaN and Infinity"):
        loads(raw)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (rb'{"a": "\ud83d\ude00"}', {"a": "\U0001f600"}),  # an emoji, ASCII-escaped
        ('{"a": "😀 é"}'.encode(), {"a": "😀 é"}),
        (rb'{"a": "\\ud800"}', {"a": "\\ud800"}),  # an escaped backslash: text
        (rb'{"a": 10000000000000000000000}', {"a": 10**22}),  # json's integers, unbounded
        (rb'{"a": "NaN", "b": 1e308, "c": -0.0}', {"a": "NaN", "b": 1e308, "c": -0.0}),
        # 64 levels, the most a body may nest; brackets inside strings count for nothing.
        (b"[" * 64 + b"]" * 64, json.loads(b"[" * 64 + b"]" * 64)),
        (b'["' + b"[{" * 100 + b'"]', ["[{" * 100]),
    ],
)
def test_valid_json_reads_as_json_loads_reads_it(raw: bytes, value: object) -> None:
    assert loads(raw) == value == json.loads(raw)


def test_every_route_of_every_service_reads_its_body_with_loads() -> None:
    for service in SERVICES:
        routes = [c.original_route for _, _, c in api_routes(service.create())]
        assert routes and all(isinstance(r, JsonRoute) for r in routes), service.name


@pytest.fixture
async def routing(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(create_app(RoutingSettings(data_dir=data_dir), bus=InProcessBus())) as base,
        httpx.AsyncClient(base_url=base, headers=admin(), params={"tenant": "admiville"}) as http,
    ):
        yield http


async def test_a_route_answers_a_lone_surrogate_in_french(routing: httpx.AsyncClient) -> None:
    team = "/v1/services/voirie/teams/t1"
    json_type = {"Content-Type": "application/json"}
    answer = await routing.put(team, content=rb'{"name": "Eq\ud800"}', headers=json_type)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"].endswith("/malformed-json")
    assert "substitution UTF-16" in problem["detail"] and "octet 12" in problem["detail"]
    not_a_number = await routing.put(team, content=b'{"name": NaN}', headers=json_type)
    assert not_a_number.status_code == 400, not_a_number.text
    assert "NaN, Infinity ou -Infinity" in not_a_number.json()["detail"]
    paired = await routing.put(team, content=rb'{"name": "Eq\ud83d\ude00"}', headers=json_type)
    assert paired.status_code == 204, paired.text
