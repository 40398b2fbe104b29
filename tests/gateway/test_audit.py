"""Rule R16: every consultation is traced (who, when, procedure, purpose, consent, outcome),
never with the citizen's data, and the trail can be read back page by page."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from guichet_gateway.models import consultations
from guichet_gateway.providers import QuotientFamilialRequest
from guichet_gateway.schemas import QuotientFamilialData
from guichet_gateway.settings import GatewaySettings
from guichet_plumbing.bus import InProcessBus
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from tests.gateway.conftest import (
    AGENT_42,
    CALLER,
    DINUM_SIRET,
    Gateway,
    running,
    staging_case,
)
from tests.support import eventually

NOMINAL = "200-identite-cas-nominal.yaml"


def personal_strings(case: str) -> set[str]:
    """Every identity value sent and every value returned for a staging case."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and len(value) >= 4 and not value.isdigit():
            # Bare codes (commune, country) could occur by chance inside a UUID or timestamp.
            found.add(value)

    raw = staging_case(case)
    walk(raw["params"])
    if raw["status"] == 200:
        walk(json.loads(raw["payload"])["data"])
    return found - {"FRANCE", "CNAF"}


async def audit_items(gateway: Gateway, **params: str) -> list[dict[str, Any]]:
    response = await gateway.client.get("/v1/audit", params={"tenant": CALLER["tenant"], **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def stored_rows(settings: GatewaySettings) -> list[dict[str, Any]]:
    db = Database(settings.resolved_database_url("gateway"))
    try:
        async with db.sessions() as session:
            result = await session.execute(sa.select(consultations))
            return [dict(row._mapping) for row in result]
    finally:
        await db.dispose()


async def test_r16_every_call_is_traced_for_success_and_failure(gateway: Gateway) -> None:
    agent = AGENT_42
    calls = [
        (NOMINAL, {}, 200, "success", "sandbox", None),
        (
            "404-identite-cas-nominal-trop-peu-de-donnee-prenom.yaml",
            {},
            404,
            "not_found",
            "sandbox",
            "37003",
        ),
        ("429.yaml", {}, 429, "rate_limited", "sandbox", "00429"),
        ("502.yaml", {}, 502, "upstream_error", "sandbox", "37999"),
        ("504.yaml", {}, 504, "upstream_timeout", "sandbox", "37002"),
        (NOMINAL, {"consent": "false"}, 403, "consent_missing", None, None),
        (NOMINAL, {"purpose": "fraud_detection"}, 403, "purpose_forbidden", None, None),
    ]
    before = datetime.now().astimezone()
    for case, caller, status, _, _, _ in calls:
        response = await gateway.quotient(case, headers=agent, **caller)
        assert response.status_code == status, response.text

    items = await audit_items(gateway)

    # Newest first.
    expected = list(reversed(calls))
    assert [(i["outcome"], i["status_code"], i["provider"], i["upstream_code"]) for i in items] == [
        (outcome, status, provider, code) for _, _, status, outcome, provider, code in expected
    ]
    for item, (_, caller, *_rest) in zip(items, expected, strict=True):
        assert item["agent_id"] == "agent-42"
        assert item["tenant"] == CALLER["tenant"]
        assert item["procedure"] == CALLER["procedure"]
        assert item["purpose"] == caller.get("purpose", CALLER["purpose"])
        assert item["consent"] is (caller.get("consent", "true") == "true")
        assert item["recipient"] == DINUM_SIRET
        assert item["dataset"] == "quotient_familial"
        assert datetime.fromisoformat(item["occurred_at"]) >= before

    # The success's consultation id is the one the trail holds.
    ok = await gateway.quotient(NOMINAL)
    assert (await audit_items(gateway))[0]["id"] == ok.json()["consultation_id"]


async def test_r16_trace_never_holds_the_citizens_data(gateway: Gateway) -> None:
    for case in (NOMINAL, "200-couple-2_enfants-qf_msa_150_mai23.yaml", "502.yaml"):
        assert (await gateway.quotient(case)).status_code in {200, 502}
    secrets = set().union(
        *(
            personal_strings(c)
            for c in (NOMINAL, "200-couple-2_enfants-qf_msa_150_mai23.yaml", "502.yaml")
        )
    )
    assert "LEFEBVRE" in secrets
    assert "JEAN-PHILIPPE" in secrets

    listing = json.dumps(await audit_items(gateway), ensure_ascii=False)
    stored = json.dumps(await stored_rows(gateway.settings), default=str, ensure_ascii=False)

    assert len(await stored_rows(gateway.settings)) == 3
    for secret in secrets:
        assert secret not in listing
        assert secret not in stored


async def test_r16_anonymous_callers_reach_no_state_data(gateway: Gateway) -> None:
    refused = await gateway.quotient(NOMINAL, headers={"Authorization": ""})

    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert await stored_rows(gateway.settings) == []


class CrashingProvider:
    name = "crashing-fake"

    async def fetch(self, request: QuotientFamilialRequest) -> QuotientFamilialData:
        raise RuntimeError("connection reset by a bug")


async def test_r16_crashing_provider_is_traced_and_answered_502(
    settings: GatewaySettings,
) -> None:
    async with running(settings, provider=CrashingProvider()) as gateway:
        response = await gateway.quotient(NOMINAL)

        assert response.status_code == 502
        assert response.json()["type"].endswith("/provider-error")
        [item] = await audit_items(gateway)
        assert (item["outcome"], item["provider"], item["status_code"]) == (
            "upstream_error",
            "crashing-fake",
            502,
        )


async def test_audit_pages_are_complete_and_deterministic(gateway: Gateway) -> None:
    for procedure in [
        "tarif-cantine",
        "tarif-cantine",
        "conservatoire",
        "tarif-cantine",
        "conservatoire",
    ]:
        assert (await gateway.quotient(NOMINAL, procedure=procedure)).status_code == 200
    await gateway.quotient(NOMINAL, tenant="autre-ville")

    everything = await audit_items(gateway, limit="200")
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params = {"tenant": CALLER["tenant"], "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        body = (await gateway.client.get("/v1/audit", params=params)).json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i["id"] for p in pages for i in p] == [i["id"] for i in everything]
    assert len(everything) == 5
    keys = [(i["occurred_at"], i["id"]) for i in everything]
    assert keys == sorted(keys, reverse=True)
    assert {i["tenant"] for i in everything} == {CALLER["tenant"]}
    conservatoire = await audit_items(gateway, procedure="conservatoire")
    assert [i["procedure"] for i in conservatoire] == ["conservatoire"] * 2


async def test_audit_rejects_a_forged_cursor(gateway: Gateway) -> None:
    response = await gateway.client.get(
        "/v1/audit", params={"tenant": CALLER["tenant"], "cursor": "not-a-cursor"}
    )

    assert response.status_code == 400
    assert response.json()["type"].endswith("/cursor-invalid")


async def test_audit_requires_a_tenant(gateway: Gateway) -> None:
    response = await gateway.client.get("/v1/audit")

    assert response.status_code == 422
    assert [p["name"] for p in response.json()["invalid-params"]] == ["tenant"]


async def test_r16_consultation_event_is_published_without_personal_data(
    settings: GatewaySettings,
) -> None:
    bus = InProcessBus()
    received: list[Envelope] = []

    async def collect(envelope: Envelope) -> None:
        received.append(envelope)

    bus.subscribe("test", ["gateway.consultation.recorded.v1"], collect)
    async with running(settings, bus=bus) as gateway:
        ok = await gateway.quotient(NOMINAL)
        refused = await gateway.quotient(NOMINAL, purpose="sanction")

        async def both() -> bool:
            await asyncio.sleep(0)
            return len(received) == 2

        await eventually(both, what="two consultation events")

    by_id = {e.data["consultation_id"]: e for e in received}
    success = by_id[ok.json()["consultation_id"]]
    assert success.tenant == CALLER["tenant"]
    assert success.subject == ok.json()["consultation_id"]
    assert success.data["outcome"] == "success"
    assert {e.data["outcome"] for e in received} == {"success", "purpose_forbidden"}
    assert refused.status_code == 403
    wire = "".join(e.model_dump_json() for e in received)
    for secret in personal_strings(NOMINAL):
        assert secret not in wire
