"""Open311 GeoReport v2 over real HTTP, with intake behind it: the whole embedded system
on a loopback port, reports filed through intake's public API (R23)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from guichet_launcher.embedded import create_embedded_app
from guichet_plumbing.localinfra import free_port
from tests.identity import client as system
from tests.identity import handler
from tests.support import eventually, serve

OPEN311 = "/routing/open311/v2"
REPORT = {
    "jurisdiction_id": "admiville",
    "service_code": "signalement-voirie",
    "lat": "48.8566",
    "long": "2.3522",
    "address_string": "12 rue des Lilas",
    "email": "ines.moreau@example.org",
    "first_name": "Inès",
    "last_name": "Moreau",
    "description": "Nid-de-poule profond devant le n° 12",
    "media_url": "https://photos.example.org/nid-de-poule.jpg",
}


async def _client(data_dir: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    app = create_embedded_app(
        data_dir,
        intake_url=f"http://127.0.0.1:{port}/intake",
        sender_poll_interval=0.2,
        **settings,
    )
    async with serve(app, port) as base, httpx.AsyncClient(base_url=base, timeout=20) as client:
        yield client


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(data_dir):
        yield c


def errors(answer: httpx.Response) -> list[str]:
    """The standard's error body, in JSON or XML: the descriptions."""
    if answer.headers["content-type"].startswith("text/xml"):
        root = ET.fromstring(answer.content)
        assert root.tag == "errors"
        return [e.findtext("description") or "" for e in root.iter("error")]
    body = answer.json()
    assert isinstance(body, list)
    assert all(set(e) == {"code", "description"} for e in body)
    assert {e["code"] for e in body} == {answer.status_code}
    return [e["description"] for e in body]


async def file_report(client: httpx.AsyncClient, **changes: str) -> str:
    """POST a report and follow its token until routing gives its number."""
    posted = await client.post(f"{OPEN311}/requests.json", data={**REPORT, **changes})
    assert posted.status_code == 201, posted.text
    [created] = posted.json()
    token = created["token"]

    async def number() -> str | None:
        answer = await client.get(f"{OPEN311}/tokens/{token}.json")
        assert answer.status_code == 200, answer.text
        found: str | None = answer.json()[0]["service_request_id"]
        return found

    return await eventually(number, timeout=20, what="report routed")


async def test_services_are_the_tenants_report_procedures_in_json_and_xml(
    client: httpx.AsyncClient,
) -> None:
    listed = await client.get(f"{OPEN311}/services.json", params={"jurisdiction_id": "admiville"})
    assert listed.status_code == 200
    [voirie] = listed.json()
    assert voirie["service_code"] == "signalement-voirie"
    assert voirie["service_name"] == "Signalement d'un problème sur la voie publique"
    assert voirie["group"] == "Centre technique municipal, service de la voirie"
    assert voirie["metadata"] is False

    # One collectivité on this guichet: jurisdiction_id may be left out.
    as_xml = await client.get(f"{OPEN311}/services.xml")
    assert as_xml.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(as_xml.content)
    assert [s.findtext("service_code") for s in root.iter("service")] == ["signalement-voirie"]
    assert root.find("service/metadata").text == "false"  # type: ignore[union-attr]

    definition = await client.get(f"{OPEN311}/services/signalement-voirie.json")
    assert definition.json() == {"service_code": "signalement-voirie", "attributes": []}

    discovery = (await client.get(f"{OPEN311}/discovery.json")).json()
    [endpoint] = discovery["endpoints"]
    assert endpoint["url"] == str(client.base_url).rstrip("/") + OPEN311
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"


async def test_r23_posted_report_is_a_real_request_with_its_receipt(
    client: httpx.AsyncClient,
) -> None:
    number = await file_report(client)

    async def assigned_in_intake() -> dict[str, Any] | None:
        # Routing knows the number first; intake learns of the assignment by its event.
        answer = await client.get(f"/intake/v1/requests/{number}", headers=handler("voirie"))
        found: dict[str, Any] = answer.json()
        return found if found["status"] == "assigned" else None

    # Intake received, timestamped and acknowledged it like any web request.
    followed = await eventually(assigned_in_intake, timeout=20, what="assignment seen by intake")
    assert followed["procedure"] == "signalement-voirie"
    assert followed["acknowledgement"]["kind"] == "accuse_reception"

    [one] = (await client.get(f"{OPEN311}/requests/{number}.json")).json()
    assert one["service_request_id"] == number
    assert one["status"] == "open"
    assert one["status_notes"] == "Reçue par le service compétent"
    assert one["agency_responsible"] == "Centre technique municipal, service de la voirie"
    assert (one["lat"], one["long"]) == (48.8566, 2.3522)
    assert one["address"] == "12 rue des Lilas"
    assert one["description"] == "Nid-de-poule profond devant le n° 12"
    assert one["media_url"] == "https://photos.example.org/nid-de-poule.jpg"
    assert one["requested_datetime"] == followed["received_at"].replace("+00:00", "Z")

    as_xml = await client.get(f"{OPEN311}/requests/{number}.xml")
    root = ET.fromstring(as_xml.content)
    assert root.tag == "service_requests"
    assert root.findtext("request/service_request_id") == number
    assert root.findtext("request/lat") == "48.8566"


async def test_r30_second_report_nearby_is_linked_and_listings_filter(
    client: httpx.AsyncClient,
) -> None:
    first = await file_report(client)
    # 20 m further north: the same pothole.
    second = await file_report(client, lat="48.85678", email="paul.leroy@example.org")
    listed = (await client.get(f"{OPEN311}/requests.json")).json()
    assert [r["service_request_id"] for r in listed] == [second, first]
    assert all("1 autre(s) personne(s)" in (r["service_notice"] or "") for r in listed)

    only = await client.get(
        f"{OPEN311}/requests.json", params={"service_request_id": first, "status": "closed"}
    )
    assert [r["service_request_id"] for r in only.json()] == [first], "numbers override filters"
    closed = await client.get(f"{OPEN311}/requests.json", params={"status": "closed"})
    assert closed.json() == []
    other_type = await client.get(f"{OPEN311}/requests.json", params={"service_code": "autre"})
    assert other_type.json() == []
    old = await client.get(
        f"{OPEN311}/requests.json",
        params={"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-03-01T00:00:00+01:00"},
    )
    assert old.json() == []

    inbox = (
        await client.get(
            "/routing/v1/inbox", params={"tenant": "admiville"}, headers=handler("voirie")
        )
    ).json()
    [incident] = inbox["items"]
    assert incident["tracking_code"] == first
    assert incident["reporters"] == 2


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_invalid_report_gets_standard_errors_in_french(
    client: httpx.AsyncClient, fmt: str
) -> None:
    missing = await client.post(f"{OPEN311}/requests.{fmt}", data={"description": "trou"})
    assert missing.status_code == 400
    described = errors(missing)
    for field in ("service_code", "email ou phone", "lat", "long"):
        assert any(d.startswith(f"{field} :") for d in described), (field, described)

    off_earth = await client.post(
        f"{OPEN311}/requests.{fmt}", data={**REPORT, "lat": "91", "long": "nan"}
    )
    assert off_earth.status_code == 400
    assert len(errors(off_earth)) == 2

    # Intake's own validation, in Open311 words.
    bad_email = await client.post(f"{OPEN311}/requests.{fmt}", data={**REPORT, "email": "x@"})
    assert bad_email.status_code == 400
    [why] = errors(bad_email)
    assert why.startswith("email :")

    unknown_type = await client.post(
        f"{OPEN311}/requests.{fmt}", data={**REPORT, "service_code": "reservation-salle"}
    )
    assert unknown_type.status_code == 404
    assert "n'est pas un signalement" in errors(unknown_type)[0]


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_invalid_queries_get_standard_errors_never_5xx(
    client: httpx.AsyncClient, fmt: str
) -> None:
    for path, params, status, words in (
        ("requests", {"status": "fini"}, 400, "status :"),
        ("requests", {"start_date": "hier"}, 400, "start_date :"),
        ("requests", {"end_date": "2026-03-01T00:00:00"}, 400, "fuseau horaire"),
        (
            "requests",
            {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-04-02T00:00:00Z"},
            400,
            "90 jours",
        ),
        ("requests", {"jurisdiction_id": "ailleurs"}, 404, "jurisdiction_id :"),
        ("requests/AAAA-BBBB-CCCC-DDDD", {}, 404, "Aucun signalement"),
        (f"tokens/{uuid.uuid4()}", {}, 404, "jeton"),
        ("tokens/pas-un-jeton", {}, 404, "jeton"),
        ("services/nulle", {}, 404, "service_code :"),
        # A NUL character: the standard's errors here too, under the embedded mount.
        ("services", {"jurisdiction_id": "admi\x00ville"}, 404, "jurisdiction_id :"),
    ):
        answer = await client.get(f"{OPEN311}/{path}.{fmt}", params=params)
        assert answer.status_code == status, (path, params, answer.text)
        assert any(words in d for d in errors(answer)), (path, params, answer.text)

    unknown_format = await client.get(f"{OPEN311}/services.csv")
    assert unknown_format.status_code == 400
    assert "json ou .xml" in errors(unknown_format)[0]


async def test_retry_with_the_same_idempotency_key_files_one_report(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "appli-mobile-42"}
    first = await client.post(f"{OPEN311}/requests.json", data=REPORT, headers=headers)
    again = await client.post(f"{OPEN311}/requests.json", data=REPORT, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()[0]["token"] == again.json()[0]["token"]


async def test_api_key_required_when_the_collectivite_sets_keys(data_dir: Path) -> None:
    async for client in _client(data_dir, open311_api_keys=["cle-appli-citoyenne"]):
        refused = await client.post(f"{OPEN311}/requests.json", data=REPORT)
        assert refused.status_code == 403
        assert errors(refused)[0].startswith("api_key :")
        accepted = await client.post(
            f"{OPEN311}/requests.json", data={**REPORT, "api_key": "cle-appli-citoyenne"}
        )
        assert accepted.status_code == 201, accepted.text
        # Another administration's system presents its client token instead of a key.
        by_token = await client.post(
            f"{OPEN311}/requests.json",
            data={**REPORT, "email": "regie@example.org"},
            headers=system("open311:write"),
        )
        assert by_token.status_code == 201, by_token.text
        # Only with the scope, and only for its own collectivité.
        wrong_scope = await client.post(
            f"{OPEN311}/requests.json", data=REPORT, headers=system("transfers:write")
        )
        assert wrong_scope.status_code == 403
        other_tenant = await client.post(
            f"{OPEN311}/requests.json",
            data=REPORT,
            headers=system("open311:write", tenant="ubourg"),
        )
        assert other_tenant.status_code == 403
        assert errors(other_tenant)[0].startswith("jurisdiction_id :")
