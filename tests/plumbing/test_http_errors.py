"""Bad input gets RFC 9457 problem details in French, and never a 5xx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from guichet_intake.app import create_app
from guichet_intake.schemas import RECEIPT_TOKEN_MAX_LENGTH
from guichet_intake.settings import IntakeSettings
from tests.identity import staff
from tests.support import serve

PROBLEM = "application/problem+json"
VALID = {
    "tenant": "admiville",
    "procedure": "reservation-salle",
    "channel": "web",
    "applicant": {"name": "Camille Martin", "email": "camille.martin@example.org"},
}


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(IntakeSettings(data_dir=data_dir, max_body_bytes=1024 * 1024))
    async with serve(app) as base, httpx.AsyncClient(base_url=base, headers=staff()) as http:
        yield http


async def count_requests(client: httpx.AsyncClient) -> float:
    metrics = (await client.get("/metrics")).text
    line = next(
        (
            line
            for line in metrics.splitlines()
            if line.startswith(
                'guichet_http_requests_total{method="POST",route="/v1/requests",status="2xx"}'
            )
        ),
        None,
    )
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


async def test_malformed_json_is_400_in_french(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/v1/requests", content=b'{"tenant": ', headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["type"].endswith("/malformed-json")
    assert "JSON" in problem["detail"] and problem["status"] == 400


async def test_body_over_one_mebibyte_is_413_from_its_declared_length(
    client: httpx.AsyncClient,
) -> None:
    huge = b'{"payload": "' + b"x" * (1024 * 1024) + b'"}'
    answer = await client.post(
        "/v1/requests", content=huge, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == PROBLEM
    assert "1024 Kio" in answer.json()["detail"]


async def test_streamed_body_without_length_is_cut_at_the_limit(
    client: httpx.AsyncClient,
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 4 MiB offered in 64 KiB chunks
            sent += 1
            yield b"x" * 65536

    answer = await client.post(
        "/v1/requests", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["type"].endswith("/payload-too-large")


async def test_validation_errors_name_each_field_in_french(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/v1/requests",
        json={**VALID, "channel": "pigeon", "applicant": {"name": "A", "email": "x"}},
    )
    assert answer.status_code == 422
    problem = answer.json()
    names = {p["name"]: p["reason"] for p in problem["invalid-params"]}
    assert set(names) == {"channel", "applicant.email"}
    assert "valeurs possibles" in names["channel"]
    assert "channel" in problem["detail"]


@pytest.mark.parametrize(
    "email", ["jean@", "jean@localhost", "jean@mairie.test", "j" * 65 + "@example.org.", "é@"]
)
async def test_an_invalid_email_is_explained_in_french(
    client: httpx.AsyncClient, email: str
) -> None:
    """email-validator explains in English: every refusal reads in French."""
    answer = await client.post(
        "/v1/requests", json={**VALID, "applicant": {"name": "Jean", "email": email}}
    )
    assert answer.status_code == 422
    [param] = answer.json()["invalid-params"]
    assert param["name"] == "applicant.email"
    assert param["reason"].startswith("Adresse électronique invalide")


async def test_nan_in_a_form_is_refused_not_stored(client: httpx.AsyncClient) -> None:
    """Python's JSON reader takes NaN; JSON and PostgreSQL do not: a 400, never a 500."""
    for number in (b"NaN", b"Infinity", b"-Infinity"):
        content = json.dumps({**VALID, "payload": {"surface": [1.5, {"m2": 0}]}}).encode()
        answer = await client.post(
            "/v1/requests",
            content=content.replace(b'"m2": 0', b'"m2": ' + number),
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 400, number
        assert answer.headers["content-type"] == PROBLEM
        problem = answer.json()
        assert problem["type"].endswith("/malformed-json")
        assert "NaN, Infinity ou -Infinity" in problem["detail"]
    assert await count_requests(client) == 0.0


async def test_a_form_nested_past_the_limit_is_refused_not_stored(
    client: httpx.AsyncClient,
) -> None:
    """200 levels: Python reads it, but the event it made could never be read back, and
    the relay would have retried it forever in front of every later event."""
    deep = b"[" * 200 + b"]" * 200
    content = json.dumps({**VALID, "payload": {"x": 0}}).encode().replace(b"0}", deep + b"}")
    answer = await client.post(
        "/v1/requests", content=content, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert "imbrique trop de listes ou d'objets" in answer.json()["detail"]
    assert await count_requests(client) == 0.0


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b'{"tenant": "\xe9"}', "pas un texte UTF-8 valide (octet 12)"),
        (b"[" * 5000, "imbrique trop de listes ou d'objets"),
    ],
)
async def test_a_body_no_reader_can_take_is_explained_in_french(
    client: httpx.AsyncClient, content: bytes, said: str
) -> None:
    answer = await client.post(
        "/v1/requests", content=content, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["type"].endswith("/malformed-json")
    assert said in answer.json()["detail"]


async def test_preference_without_matching_address_is_explained(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post("/v1/requests", json={**VALID, "contact_preference": "letter"})
    assert answer.status_code == 422
    [param] = answer.json()["invalid-params"]
    assert param["name"] == "contact_preference"
    assert "adresse postale" in param["reason"]
    # Left out, the preference is e-mail: an applicant with a phone only is told so too.
    phone_only = {**VALID, "applicant": {"name": "Jean", "phone": "06 11 22 33 44"}}
    phone_only.pop("contact_preference", None)
    answer = await client.post("/v1/requests", json=phone_only)
    assert answer.status_code == 422
    [param] = answer.json()["invalid-params"]
    assert param["name"] == "contact_preference"
    assert "adresse électronique" in param["reason"]


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    wrong = await client.delete("/v1/requests")
    assert wrong.status_code == 405 and wrong.headers["content-type"] == PROBLEM


async def test_rejected_input_harms_nothing_already_stored(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/requests", json=VALID, headers={"Idempotency-Key": "k1"})
    assert created.status_code == 201
    code = created.json()["tracking_code"]
    await client.post(
        "/v1/requests",
        content=b"{",
        headers={"Idempotency-Key": "k1", "Content-Type": "application/json"},
    )
    await client.post(
        "/v1/requests", json={**VALID, "tenant": "ailleurs"}, headers={"Idempotency-Key": "k1"}
    )
    followed = await client.get(f"/v1/requests/{code}")
    assert followed.status_code == 200
    replay = await client.post("/v1/requests", json=VALID, headers={"Idempotency-Key": "k1"})
    assert replay.json()["tracking_code"] == code
    assert await count_requests(client) == 2.0  # the creation and its replay


async def test_a_value_over_its_documented_length_is_refused_even_padded(
    client: httpx.AsyncClient,
) -> None:
    """The OpenAPI gives a maximum length: a space at one end makes no exception."""
    padded = " " + "a" * RECEIPT_TOKEN_MAX_LENGTH
    answer = await client.post("/v1/receipts/verify", json={"token": padded})
    assert answer.status_code == 422
    assert [p["name"] for p in answer.json()["invalid-params"]] == ["token"]
