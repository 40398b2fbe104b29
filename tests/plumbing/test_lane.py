"""A lane answers exactly as the FastAPI route it serves (`guichet_plumbing.lane`).

The same requests go to intake with its submission served as a lane and with lanes
turned off (FastAPI's own path): statuses, problem details and headers must match,
for good input and for every kind of bad input, in the order FastAPI checks them.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from guichet_intake.app import create_app
from guichet_intake.settings import IntakeSettings
from tests.identity import counter, handler
from tests.support import serve

VALID = {
    "tenant": "admiville",
    "procedure": "reservation-salle",
    "channel": "web",
    "applicant": {"name": "Camille Martin", "email": "camille.martin@example.org"},
}
JSON = {"Content-Type": "application/json"}
LONG_KEY = "k" * 256


def body(**changes: Any) -> bytes:
    return json.dumps({**VALID, **changes}).encode()


# (label, headers, content): each sent to both apps.
CASES: list[tuple[str, dict[str, str], bytes]] = [
    ("valid", JSON, body()),
    ("valid, keyed", {**JSON, "Idempotency-Key": "lane-1"}, body()),
    ("keyed replay", {**JSON, "Idempotency-Key": "lane-1"}, body()),
    ("key reused for another body", {**JSON, "Idempotency-Key": "lane-1"}, body(channel="sms")),
    ("JSON type with a charset", {"Content-Type": "application/json; charset=utf-8"}, body()),
    ("+json type", {"Content-Type": "application/vnd.guichet+json"}, body()),
    ("malformed JSON", JSON, b'{"tenant": '),
    ("malformed JSON and a long key", {**JSON, "Idempotency-Key": LONG_KEY}, b"{"),
    ("nested too deep", JSON, b"[" * 2000),
    ("lone surrogate", JSON, body(payload={"salle": "\ud800"})),
    ("NaN", JSON, body(payload={"salle": float("nan")})),
    ("surrogate pair (an emoji, ASCII-escaped)", JSON, body(payload={"salle": "\U0001f600"})),
    ("not UTF-8", JSON, b'{"tenant": "\xff\xfe"}'),
    (
        "a surrogate as UTF-8 bytes",
        JSON,
        body(payload={"a": "XYZZY"}).replace(b"XYZZY", b"\xed\xa0\x80"),
    ),
    ("empty body", JSON, b""),
    ("text/plain", {"Content-Type": "text/plain"}, body()),
    ("no content type", {}, body()),
    ("JSON array", JSON, b"[]"),
    ("bad fields", JSON, body(tenant="Admi ville", channel="pigeon", extra=1)),
    ("bad e-mail", JSON, body(applicant={"name": "C", "email": "pas une adresse"})),
    ("long key", {**JSON, "Idempotency-Key": LONG_KEY}, body()),
    ("long key and bad fields", {**JSON, "Idempotency-Key": LONG_KEY}, body(channel="x")),
    ("unprintable key", {**JSON, "Idempotency-Key": "a\tb"}, body()),
    ("unknown tenant", JSON, body(tenant="nulle-part")),
    ("unknown procedure", JSON, body(procedure="inconnue")),
    ("entered_by without an agent", JSON, body(entered_by="Quelqu'un")),
    ("Basic scheme", {**JSON, "Authorization": "Basic eDp5"}, body()),
    ("forged bearer", {**JSON, "Authorization": "Bearer abc.def.ghi"}, body()),
    ("agent without the right", {**JSON, **handler("voirie")}, body()),
    ("agent without the right, bad body", {**JSON, **handler("voirie")}, b"[]"),
    ("agent without the right, malformed JSON", {**JSON, **handler("voirie")}, b"{"),
    ("counter agent", {**JSON, **counter()}, body(channel="counter")),
    ("over the size limit", JSON, b'{"x": "' + b"a" * 2048 + b'"}'),
]

# What differs between two correct answers: fresh identifiers, instants and signatures.
VARYING = {"id", "tracking_code", "received_at", "issued_at", "at", "receipt_id", "token"}


def comparable(answer: httpx.Response) -> dict[str, Any]:
    document = answer.json()
    if answer.status_code < 300:
        document = _without(document, VARYING)
        document["follow_url"] = document["follow_url"].split("?")[0].rsplit("/", 1)[0]
        if document["acknowledgement"] is not None:
            mentions = document["acknowledgement"]["mentions"]
            document["acknowledgement"]["mentions"] = [m for m in mentions if "suivi" not in m]
        document.pop("receipts")
    return {
        "status": answer.status_code,
        "content-type": answer.headers["content-type"],
        "location": "location" in answer.headers,
        "www-authenticate": answer.headers.get("www-authenticate"),
        "body": document,
    }


def _diff(expected: Any, got: Any) -> str:
    def lines(value: Any) -> list[str]:
        return json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True).splitlines()

    return "\n".join(difflib.unified_diff(lines(expected), lines(got), lineterm=""))


def _without(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


@pytest.fixture
async def both(data_dir: Path) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    def app(name: str, lanes: bool) -> Any:
        settings = IntakeSettings(data_dir=data_dir / name, max_body_bytes=2048, fast_lanes=lanes)
        return create_app(settings)

    async with (
        serve(app("lane", True)) as lane_base,
        serve(app("fastapi", False)) as fastapi_base,
        httpx.AsyncClient(base_url=lane_base) as lane,
        httpx.AsyncClient(base_url=fastapi_base) as fastapi,
    ):
        yield lane, fastapi


async def test_the_lane_answers_as_the_fastapi_route(
    both: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    lane, fastapi = both
    statuses = set()
    for label, headers, content in CASES:
        via_lane = await lane.post("/v1/requests", headers=headers, content=content)
        via_fastapi = await fastapi.post("/v1/requests", headers=headers, content=content)
        expected, got = comparable(via_fastapi), comparable(via_lane)
        assert got == expected, f"{label}:\n{_diff(expected, got)}"
        assert via_lane.status_code < 500, label
        statuses.add(via_lane.status_code)
    # The table reaches every answer the route documents.
    assert statuses == {201, 400, 401, 403, 404, 409, 413, 422}


async def test_the_lane_is_measured_under_its_route(
    both: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    lane, _ = both
    assert (await lane.post("/v1/requests", headers=JSON, content=body())).status_code == 201
    assert (await lane.post("/v1/requests", headers=JSON, content=b"{")).status_code == 400
    metrics = (await lane.get("/metrics")).text
    counter = 'guichet_http_requests_total{method="POST",route="/v1/requests",status="%s"} 1.0'
    for status in ("2xx", "4xx"):
        assert counter % status in metrics, status
