"""Who reaches a request in intake: no account needed (R15), one pseudonym per service
(R15), agents journaled for the DPO (R21)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from guichet_intake.app import create_app
from guichet_intake.models import requests
from guichet_intake.settings import IntakeSettings
from guichet_plumbing.auth import Kind, Principal, Role
from tests.identity import KEYS, agent, bearer, citizen, client, counter, dpo, handler
from tests.support import serve

CAMILLE = {
    "name": "Camille Martin",
    "email": "camille.martin@example.org",
    "phone": "06 11 22 33 44",
}
BOOKING = {
    "tenant": "admiville",
    "procedure": "reservation-salle",
    "channel": "web",
    "applicant": CAMILLE,
    "payload": {"salle": "Salle des fêtes"},
}
CERTIFICATE = {
    **BOOKING,
    "procedure": "acte-etat-civil",
    "payload": {"acte": "naissance"},
}


@dataclass
class Intake:
    http: httpx.AsyncClient
    app: FastAPI

    async def submit(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        answer = await self.http.post("/v1/requests", json=body, headers=headers or {})
        assert answer.status_code == 201, answer.text
        return answer.json()

    async def owners(self) -> dict[str, tuple[str | None, str | None]]:
        db = self.app.state.runtime.db
        async with db.sessions() as session:
            rows = await session.execute(
                sa.select(requests.c.tracking_code, requests.c.owner, requests.c.owner_family)
            )
            return {r.tracking_code: (r.owner, r.owner_family) for r in rows}


@pytest.fixture(params=["sqlite", "postgres"])
async def intake(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[Intake]:
    url = request.getfixturevalue("pg_database")("intake") if request.param == "postgres" else None
    app = create_app(IntakeSettings(data_dir=data_dir, database_url=url))
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        yield Intake(http, app)


async def test_r15_anonymous_request_followed_with_its_code_and_a_second_factor(
    intake: Intake,
) -> None:
    created = await intake.submit(BOOKING)
    follow = f"/v1/requests/{created['tracking_code']}"

    assert (await intake.http.get(follow)).status_code == 404, "the code alone is not enough"
    for proof in ("camille.martin@example.org", "Camille.Martin@Example.ORG", "0611223344"):
        answer = await intake.http.get(follow, headers={"X-Follow-Proof": proof})
        assert answer.status_code == 200, proof
    wrong = await intake.http.get(follow, headers={"X-Follow-Proof": "eve@example.org"})
    assert wrong.status_code == 404
    assert wrong.json()["type"].endswith("/request-unknown")

    # The signed link from the answer works alone; forged, expired or another's, it does not.
    link = parse_qs(urlsplit(created["follow_url"]).query)["access"][0]
    assert (await intake.http.get(follow, params={"access": link})).status_code == 200
    expired = KEYS.issue_link(
        f"request:{created['tracking_code']}",
        timedelta(days=90),
        now=datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert (await intake.http.get(follow, params={"access": expired})).status_code == 404
    other = await intake.submit(BOOKING)
    assert (
        await intake.http.get(f"/v1/requests/{other['tracking_code']}", params={"access": link})
    ).status_code == 404
    assert (await intake.http.get(follow, params={"access": link[:-4] + "AAAA"})).status_code == 404


async def test_r15_one_pseudonym_per_service_never_the_franceconnect_sub(intake: Intake) -> None:
    alice = bearer(citizen("fc-sub-alice"))
    booking = await intake.submit(BOOKING, alice)
    second_booking = await intake.submit(BOOKING, alice)
    certificate = await intake.submit(CERTIFICATE, alice)

    owners = await intake.owners()
    assert owners[booking["tracking_code"]][1] == "accueil"
    assert owners[certificate["tracking_code"]][1] == "etat-civil"
    assert owners[booking["tracking_code"]] == owners[second_booking["tracking_code"]]
    assert owners[booking["tracking_code"]][0] != owners[certificate["tracking_code"]][0]
    assert all("fc-sub-alice" not in str(owner) for owner in owners.values())

    # Logged in, Alice follows her requests with nothing more; Bob does not.
    for created in (booking, certificate):
        follow = f"/v1/requests/{created['tracking_code']}"
        assert (await intake.http.get(follow, headers=alice)).status_code == 200
        bob = await intake.http.get(follow, headers=bearer(citizen("fc-sub-bob")))
        assert bob.status_code == 404


async def test_r21_dpo_reads_who_read_which_file_and_why(intake: Intake) -> None:
    created = await intake.submit(BOOKING)
    follow = f"/v1/requests/{created['tracking_code']}"
    reader = handler("accueil")
    assert (await intake.http.get(follow, headers=reader)).status_code == 200
    refused = await intake.http.get(follow, headers=handler("voirie"))
    assert refused.status_code == 404, "another service's file reads as no file"
    pieces = await intake.http.post(
        f"{follow}/missing-pieces",
        # An input date, not a computed one: a month from today is within the allowed time.
        json={"pieces": ["Attestation d'assurance"], "due_on": str(date.today() + timedelta(30))},
        headers=reader,
    )
    assert pieces.status_code == 200, pieces.text

    log = await intake.http.get("/v1/access-log", params={"tenant": "admiville"}, headers=dpo())
    assert log.status_code == 200, log.text
    entries = [(e["actor"], e["file"], e["service"], e["purpose"]) for e in log.json()["items"]]
    actor = "agent:case_handler-accueil"
    assert entries == [
        (actor, created["id"], "accueil", "instruction"),
        (actor, created["id"], "accueil", "consultation du dossier"),
    ]
    # The journal is the DPO's: not the agents', not another collectivité's DPO's.
    for headers in (reader, counter(), dpo("ubourg")):
        answer = await intake.http.get(
            "/v1/access-log", params={"tenant": "admiville"}, headers=headers
        )
        assert answer.status_code == 403


async def test_r22_counter_agent_follows_what_they_entered_and_nothing_else(
    intake: Intake,
) -> None:
    desk = counter(subject="agent-accueil-1")
    entered = await intake.submit({**BOOKING, "channel": "counter"}, desk)
    other = await intake.submit(BOOKING)
    mine = await intake.http.get(f"/v1/requests/{entered['tracking_code']}", headers=desk)
    assert mine.status_code == 200
    assert (
        await intake.http.get(f"/v1/requests/{other['tracking_code']}", headers=desk)
    ).status_code == 404
    # The body cannot claim someone else entered it.
    claimed = await intake.http.post("/v1/requests", json={**BOOKING, "entered_by": "agent-42"})
    assert claimed.status_code == 403


async def test_r22_only_the_administration_enters_what_came_on_paper_or_by_phone(
    intake: Intake,
) -> None:
    """A sender declaring `counter`, `phone` or `mail` would escape R7's identification and
    R9's checks: refused in French, nothing stored; an agent's entry is received."""
    for channel in ("counter", "phone", "mail"):
        for headers in ({}, bearer(citizen("sub-camille"))):
            answer = await intake.http.post(
                "/v1/requests", json={**BOOKING, "channel": channel}, headers=headers
            )
            assert answer.status_code in (401, 403), (channel, answer.text)
            if answer.status_code == 403:
                assert "saisie par un agent" in answer.json()["detail"]
    assert await intake.owners() == {}
    assert await intake.submit({**BOOKING, "channel": "phone"}, counter())
    # Nor a mediator (France Services), though they may submit online for a citizen: the
    # entry is the administration's reception, and a letter's date is declared by it.
    answer = await intake.http.post(
        "/v1/requests",
        json={**BOOKING, "channel": "mail", "received_on": "2026-01-05"},
        headers=bearer(agent(Role.mediator)),
    )
    assert answer.status_code == 403, answer.text
    assert "agent d'accueil" in answer.json()["detail"]
    # Neither a citizen nor a mediator may claim that another administration received it
    # first (R13): SVR would run from the date they declare.
    for principal in (citizen("sub-camille"), agent(Role.mediator)):
        answer = await intake.http.post(
            "/v1/requests",
            json={**BOOKING, "first_received_on": "2026-01-05"},
            headers=bearer(principal),
        )
        assert answer.status_code == 403, (principal.kind, answer.text)
        assert "first_received_on" in answer.json()["detail"]


async def test_r21_an_agent_or_client_enters_requests_for_its_own_collectivite_only(
    intake: Intake,
) -> None:
    for headers in (counter(tenant="autreville"), client("transfers:write", tenant="autreville")):
        answer = await intake.http.post(
            "/v1/requests", json={**BOOKING, "channel": "web"}, headers=headers
        )
        assert answer.status_code == 403
        assert "collectivité « admiville »" in answer.json()["detail"]
    assert await intake.owners() == {}


async def grant(intake: Intake, grantor: dict[str, str], **mandate: Any) -> str:
    answer = await intake.http.post(
        "/v1/mandates", json={"tenant": "admiville", **mandate}, headers=grantor
    )
    assert answer.status_code == 201, answer.text
    mandate_id: str = answer.json()["id"]
    return mandate_id


async def test_r25_aidant_acts_by_mandate_traced_to_both(intake: Intake) -> None:
    camille = bearer(citizen("fc-camille"))
    own = await intake.submit(BOOKING, camille)
    helper = bearer(agent(Role.mediator, subject="mediatrice-fs"))
    follow = f"/v1/requests/{own['tracking_code']}"
    assert (await intake.http.get(follow, headers=helper)).status_code == 404, "no mandate yet"

    mandate = await grant(intake, camille, kind="aidant", agent="mediatrice-fs")
    by_mandate = {**helper, "X-Mandate": mandate}
    assert (await intake.http.get(follow, headers=by_mandate)).status_code == 200
    # The aidant files a request for Camille: it is hers.
    filed = await intake.submit(CERTIFICATE, by_mandate)
    mine = await intake.http.get(f"/v1/requests/{filed['tracking_code']}", headers=camille)
    assert mine.status_code == 200

    log = await intake.http.get("/v1/access-log", params={"tenant": "admiville"}, headers=dpo())
    assert [(e["actor"], e["acting_for"], e["file"]) for e in log.json()["items"]] == [
        ("agent:mediatrice-fs", mandate, own["id"])
    ]
    # Another aidant cannot borrow the mandate; once withdrawn, it opens nothing.
    other = {**bearer(agent(Role.mediator, subject="autre-aidant")), "X-Mandate": mandate}
    assert (await intake.http.get(follow, headers=other)).status_code == 404
    revoked = await intake.http.delete(f"/v1/mandates/{mandate}", headers=camille)
    assert revoked.status_code == 204
    assert (await intake.http.get(follow, headers=by_mandate)).status_code == 404
    refused = await intake.http.post("/v1/requests", json=BOOKING, headers=by_mandate)
    assert refused.status_code == 403


async def test_r25_protected_adult_and_legal_representative_both_reach_the_requests(
    intake: Intake,
) -> None:
    adult = bearer(citizen("fc-adulte-protege"))
    own = await intake.submit(BOOKING, adult)
    mandate = await grant(
        intake,
        adult,
        kind="representant_legal",
        representative={"family_name": "Dubois", "given_name": "Angela", "birthdate": "1962-08-24"},
    )
    # FranceConnect vouches for the representative's identity, as the court decision names it.
    tutor = Principal(
        Kind.citizen,
        subject="fc-angela",
        identity={"family_name": "DUBOIS", "given_name": "Angela", "birthdate": "1962-08-24"},
    )
    as_tutor = {**bearer(tutor), "X-Mandate": mandate}
    follow = f"/v1/requests/{own['tracking_code']}"
    assert (await intake.http.get(follow, headers=as_tutor)).status_code == 200
    filed = await intake.submit(CERTIFICATE, as_tutor)
    both = [adult, as_tutor]
    for headers in both:
        answer = await intake.http.get(f"/v1/requests/{filed['tracking_code']}", headers=headers)
        assert answer.status_code == 200
    impostor = Principal(
        Kind.citizen,
        subject="fc-eve",
        identity={"family_name": "DUBOIS", "given_name": "Eve", "birthdate": "1962-08-24"},
    )
    as_impostor = {**bearer(impostor), "X-Mandate": mandate}
    assert (await intake.http.get(follow, headers=as_impostor)).status_code == 404
