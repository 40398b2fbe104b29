"""Bad or unusual input through the HTTP API, on both engines: a problem in French naming
the field, never a server error, and nothing stored that cannot be kept as sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from guichet_intake.app import create_app
from guichet_intake.models import requests
from guichet_intake.settings import IntakeSettings
from tests.identity import admin, counter, dpo, staff
from tests.support import serve

PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}
VALID: dict[str, Any] = {
    "tenant": "admiville",
    "procedure": "reservation-salle",
    "channel": "web",
    "applicant": {"name": "Camille Martin", "email": "camille.martin@example.org"},
    "payload": {"salle": "Salle des fêtes"},
}
Site = tuple[httpx.AsyncClient, FastAPI]


@pytest.fixture(params=["sqlite", "postgres"])
async def site(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[Site]:
    url = request.getfixturevalue("pg_database")("intake") if request.param == "postgres" else None
    app = create_app(IntakeSettings(data_dir=data_dir, database_url=url))
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=60) as http:
        yield http, app


def problem_naming(answer: httpx.Response, status: int, field: str) -> dict[str, Any]:
    assert answer.status_code == status, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = answer.json()
    assert field in [p["name"] for p in problem.get("invalid-params") or []], problem
    return problem


async def stored_payloads(app: FastAPI) -> list[Any]:
    async with app.state.runtime.db.sessions() as session:
        return list(await session.scalars(sa.select(requests.c.payload)))


async def test_a_nul_character_in_a_citizen_s_text_is_refused_by_name(site: Site) -> None:
    http, app = site
    address = {"street": "1 rue\u0000 Haute", "postal_code": "75001", "city": "Paris"}
    answer = await http.post(
        "/v1/requests",
        json={
            **VALID,
            "applicant": {"name": "Jean", "postal_address": address},
            "contact_preference": "letter",
        },
    )
    problem = problem_naming(answer, 422, "applicant.postal_address.street")
    assert "caractère nul" in problem["invalid-params"][0]["reason"]
    assert await stored_payloads(app) == []


async def test_r2_a_name_that_would_print_lines_of_its_own_on_the_receipt_is_refused(
    site: Site,
) -> None:
    # Signed, the receipt's text would show a reception date the collectivité never gave.
    http, app = site
    forged = "Camille Martin\nDate de réception : 1er janvier 2020"
    answer = await http.post(
        "/v1/requests", json={**VALID, "applicant": {**VALID["applicant"], "name": forged}}
    )
    problem = problem_naming(answer, 422, "applicant.name")
    assert "saut de ligne" in problem["invalid-params"][0]["reason"]
    assert await stored_payloads(app) == []


async def test_a_nul_character_in_an_agent_s_text_is_refused_by_name(site: Site) -> None:
    http, _ = site
    code = (await http.post("/v1/requests", json=VALID)).json()["tracking_code"]
    due = (date.today() + timedelta(days=30)).isoformat()
    answer = await http.post(
        f"/v1/requests/{code}/missing-pieces",
        json={"pieces": ["Pl\u0000an"], "due_on": due},
        headers=staff(),
    )
    problem_naming(answer, 422, "pieces[0]")
    answer = await http.put(
        "/v1/procedures/nouvelle",
        params={"tenant": "admiville"},
        json={"title": "Démarche\u0000", "service": "accueil"},
        headers=admin(),
    )
    problem_naming(answer, 422, "title")


async def test_a_nul_character_in_the_address_is_refused(site: Site) -> None:
    http, _ = site
    for path, name in [
        ("/v1/sources/email%00x/notice?tenant=admiville", "chemin"),
        ("/v1/sources/email:x@y.fr/notice?tenant=admi%00ville", "tenant"),
    ]:
        answer = await http.post(path, json={"reason": "Envois répétés."}, headers=admin())
        assert problem_naming(answer, 422, name)["type"].endswith("/nul-character")


async def test_r9_a_valid_address_longer_than_a_source_key_is_received_and_counted(
    site: Site,
) -> None:
    # 253 characters: an address may have up to 254 (RFC 5321); "email:" makes it 259.
    http, app = site
    long_email = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".fr"
    address = {
        "street": "12 " + "r" * 150,
        "complement": "Bâtiment B " + "c" * 80,
        "postal_code": "75001",
        "city": "Paris",
    }
    sent = [
        {**VALID, "applicant": {"name": "C", "email": long_email}},
        {
            **VALID,
            "applicant": {"name": "Jean", "postal_address": address},
            "contact_preference": "letter",
        },
    ]
    for body in sent:
        for _ in range(3):  # the same content three times: R9 flags the third
            answer = await http.post("/v1/requests", json={**body, "payload": {"n": 1}})
            assert answer.status_code == 201, (answer.status_code, answer.text[:300])
    async with app.state.runtime.db.sessions() as session:
        rows = (await session.execute(sa.select(requests.c.source, requests.c.abusive))).all()
    assert [abusive for _, abusive in rows] == [False, False, True] * 2
    assert [source.split(":")[:2] for source, _ in rows] == [["email", "sha256"]] * 3 + [
        ["mail", "sha256"]
    ] * 3
    assert len({source for source, _ in rows}) == 2


async def test_a_teleservice_address_longer_than_its_column_is_refused_by_name(
    site: Site,
) -> None:
    http, _ = site
    answer = await http.put(
        "/v1/procedures/tele",
        params={"tenant": "admiville"},
        json={
            "title": "Télédémarche",
            "service": "accueil",
            "teleservice_url": "https://demarches.example.fr/" + "a" * 600,
        },
        headers=admin(),
    )
    problem = problem_naming(answer, 422, "teleservice_url")
    assert "au plus 500 caractères" in problem["invalid-params"][0]["reason"]


def with_payload(payload: bytes, email: str) -> bytes:
    return (
        b'{"tenant":"admiville","procedure":"reservation-salle","channel":"web",'
        b'"applicant":{"name":"C","email":"' + email.encode() + b'"},"payload":' + payload + b"}"
    )


@pytest.mark.parametrize(
    "payload",
    [b'{"surface":1e400}', b'{"b":' + b"9" * 30 + b',"i":-1e400}', b'{"n":' + b"9" * 5000 + b"}"],
    ids=["overflowing-float", "overflow-beside-a-big-integer", "integer-of-5000-digits"],
)
async def test_a_number_no_store_can_keep_is_malformed_json_in_french(
    site: Site, payload: bytes
) -> None:
    http, app = site
    answer = await http.post(
        "/v1/requests", content=with_payload(payload, "n@example.org"), headers=JSON
    )
    assert answer.status_code == 400, answer.text[:300]
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["type"].endswith("/malformed-json")
    assert answer.json()["detail"].startswith("Le corps de la requête contient")
    assert await stored_payloads(app) == []  # 1e400 was stored as null


async def test_allowed_values_are_listed_in_french(site: Site) -> None:
    http, _ = site
    answer = await http.post("/v1/requests", json={**VALID, "channel": "pigeon"})
    reason = problem_naming(answer, 422, "channel")["invalid-params"][0]["reason"]
    assert reason.endswith("'mail' ou 'sms'."), reason


async def test_r10_svr_without_appeal_text_names_the_field(site: Site) -> None:
    http, _ = site
    answer = await http.put(
        "/v1/procedures/rejet",
        params={"tenant": "admiville"},
        json={"title": "Une démarche", "service": "accueil", "regime": "svr"},
        headers=admin(),
    )
    problem = problem_naming(answer, 422, "appeal_text")
    assert "délais et voies de recours" in problem["invalid-params"][0]["reason"]


async def test_a_bad_web_address_gets_a_reason_one_can_act_on(site: Site) -> None:
    http, _ = site
    answer = await http.put(
        "/v1/procedures/tele2",
        params={"tenant": "admiville"},
        json={"title": "Télédémarche", "service": "accueil", "teleservice_url": "demarches.fr"},
        headers=admin(),
    )
    reason = problem_naming(answer, 422, "teleservice_url")["invalid-params"][0]["reason"]
    assert "https://" in reason, reason


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"arrived_at": "0001-01-01T00:00:00+14:00"}, "arrived_at"),
        ({"arrived_at": "9999-12-31T23:59:59-14:00"}, "arrived_at"),
        ({"arrived_at": "2026-05-18T09:00:00"}, "arrived_at"),  # no offset: which day?
        ({"arrived_at": "2026-05-18T09:00:00Z", "channel": "mail"}, "arrived_at"),
        ({"arrived_at": "2026-05-18T09:00:00Z", "channel": "web"}, "arrived_at"),
    ],
    ids=["year-1", "year-9999", "no-offset", "a-letter", "online"],
)
async def test_r22_an_instant_of_arrival_that_cannot_be_is_refused_by_name(
    site: Site, changes: dict[str, Any], field: str
) -> None:
    # Declared by the reception or the collectivité's mailbox connector, it is checked before
    # any conversion to a local day can fail.
    http, app = site
    body = {**VALID, "channel": "email", **changes}
    answer = await http.post("/v1/requests", json=body, headers=counter())
    problem_naming(answer, 422, field)
    assert await stored_payloads(app) == []


async def test_a_cursor_beyond_any_row_number_is_refused_by_name(site: Site) -> None:
    http, _ = site
    answer = await http.get(
        "/v1/access-log",
        params={"tenant": "admiville", "before": str(2**63)},
        headers=dpo(),
    )
    problem_naming(answer, 422, "before")
    last = await http.get(
        "/v1/access-log", params={"tenant": "admiville", "before": str(2**63 - 1)}, headers=dpo()
    )
    assert last.status_code == 200, last.text


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        # That instant is 30 November in Paris: read as 1 December, it would move a clock.
        ({"channel": "mail", "received_on": "2026-12-01T00:00:00+14:00"}, "received_on"),
        ({"channel": "mail", "received_on": 1764547200}, "received_on"),  # a Unix time
        ({"channel": "email", "arrived_at": 1796200000}, "arrived_at"),
        ({"channel": "email", "arrived_at": "1796200000"}, "arrived_at"),
        ({"channel": "mail", "first_received_on": 20261201}, "first_received_on"),
    ],
    ids=[
        "day-with-an-offset",
        "day-as-a-number",
        "instant-as-a-number",
        "instant-as-a-numeral",
        "first-as-a-number",
    ],
)
async def test_r22_a_day_is_read_as_written_never_guessed(
    site: Site, changes: dict[str, Any], field: str
) -> None:
    http, app = site
    answer = await http.post("/v1/requests", json={**VALID, **changes}, headers=counter())
    problem_naming(answer, 422, field)
    assert await stored_payloads(app) == []


async def test_r12_a_transfer_is_by_post_only_when_it_says_true(site: Site) -> None:
    # "yes" would send it for good: the request closes here, which no call undoes.
    http, _ = site
    created = await http.post("/v1/requests", json=VALID)
    code = created.json()["tracking_code"]
    answer = await http.post(
        f"/v1/requests/{code}/transfer",
        json={
            "administration_name": "Préfecture du Rhône",
            "by_post": "yes",
            "reason": "Compétence de l'État.",
        },
        headers=staff(),
    )
    problem_naming(answer, 422, "by_post")
    followed = await http.get(f"/v1/requests/{code}", headers=staff())
    assert followed.json()["status"] == "received"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"delay": {"value": True}}, "delay.value"),
        ({"delay": {"value": "2"}}, "delay.value"),
        ({"extend_to_working_day": "yes"}, "extend_to_working_day"),
        ({"acknowledgement_required": 0}, "acknowledgement_required"),
    ],
    ids=["delay-true", "delay-text", "extension-yes", "ar-zero"],
)
async def test_r10_a_catalogue_entry_is_read_as_written(
    site: Site, changes: dict[str, Any], field: str
) -> None:
    http, _ = site
    answer = await http.put(
        "/v1/procedures/nouvelle",
        params={"tenant": "admiville"},
        json={"title": "Une démarche", "service": "accueil", **changes},
        headers=admin(),
    )
    problem_naming(answer, 422, field)
    listed = await http.get("/v1/procedures", params={"tenant": "admiville"})
    assert "nouvelle" not in [p["code"] for p in listed.json()["items"]]


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "multipart/form-data"},  # no boundary
        {"Content-Type": "multipart/form-data; boundary=x"},  # not what it says
    ],
    ids=["no-boundary", "bad-multipart"],
)
async def test_a_form_that_cannot_be_read_gets_a_french_problem(
    site: Site, headers: dict[str, str]
) -> None:
    http, _ = site
    answer = await http.post("/v1/auth/token", content=b"--y\r\nnonsense", headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["detail"].startswith("Le corps de la requête n'a pas pu être lu")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_a_json_body_sent_under_another_type_is_told_which_type(
    site: Site, content_type: str
) -> None:
    http, app = site
    answer = await http.post(
        "/v1/requests",
        content=json.dumps(VALID).encode(),
        headers={"Content-Type": content_type},
    )
    problem = problem_naming(answer, 422, "corps")
    assert problem["invalid-params"][0]["reason"].endswith("Content-Type: application/json.")
    assert await stored_payloads(app) == []


async def test_a_landmark_on_two_lines_is_received_as_written(site: Site) -> None:
    http, app = site
    place = {
        "latitude": 45.76,
        "longitude": 4.83,
        "address": "Devant le 12 rue Centrale\nprès de l'abribus",
    }
    answer = await http.post("/v1/requests", json={**VALID, "location": place})
    assert answer.status_code == 201, answer.text
    async with app.state.runtime.db.sessions() as session:
        [stored] = list(await session.scalars(sa.select(requests.c.location)))
    assert stored["address"] == "Devant le 12 rue Centrale\nprès de l'abribus"
