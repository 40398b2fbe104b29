"""Routing rules configured without code (R28, R29): conditions, neighbourhoods, dry run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from guichet_plumbing.bus import InProcessBus
from guichet_plumbing.envelope import Envelope
from guichet_routing.app import create_app
from guichet_routing.rules import FieldCondition, Neighbourhood, Rule, Sample, decide
from guichet_routing.schemas import FieldConditionWrite
from guichet_routing.settings import RoutingSettings
from tests.identity import staff
from tests.support import eventually, received_event, serve

# Two neighbourhoods of Admiville, as squares in WGS 84 (longitude, latitude).
CENTRE = {
    "type": "Polygon",
    "coordinates": [[[2.30, 48.80], [2.40, 48.80], [2.40, 48.90], [2.30, 48.90], [2.30, 48.80]]],
}
GARE = {
    "type": "MultiPolygon",
    "coordinates": [
        [
            [[2.40, 48.80], [2.50, 48.80], [2.50, 48.90], [2.40, 48.90], [2.40, 48.80]],
            # A hole: the station's own land is the railway's, not the town's.
            [[2.44, 48.84], [2.46, 48.84], [2.46, 48.86], [2.44, 48.86], [2.44, 48.84]],
        ]
    ],
}


def test_r29_condition_values_typed_with_stray_spaces_are_trimmed() -> None:
    """A condition compares values exactly: an administrator's stray space would make
    its rule never match. Numbers and booleans stay what they are."""
    assert FieldConditionWrite(field="nature", equals=" voirie ").equals == "voirie"
    written = FieldConditionWrite(field="nature", one_of=[" voirie", 3, True, "éclairage "])
    assert written.one_of == ["voirie", 3, True, "éclairage"]


def test_r29_conditions_on_channel_payload_and_place() -> None:
    places = [Neighbourhood("centre", "Centre", CENTRE), Neighbourhood("gare", "Gare", GARE)]
    rules = [
        Rule(
            1,
            "Voirie de la gare",
            "voirie-est",
            procedures=frozenset({"signalement-voirie"}),
            neighbourhoods=frozenset({"gare"}),
        ),
        Rule(
            2,
            "Tags urgents",
            "proprete",
            fields=(
                FieldCondition("nature", one_of=("tag", "graffiti")),
                FieldCondition("description", contains="INJURIEUX"),
            ),
        ),
        Rule(3, "Courrier papier", "courrier", channels=frozenset({"mail"})),
    ]
    in_gare = decide(
        rules,
        "accueil",
        Sample("signalement-voirie", "web", {}, longitude=2.42, latitude=48.85),
        places,
    )
    assert in_gare.service == "voirie-est"
    assert in_gare.neighbourhood == "gare"
    assert "quartier Gare" in in_gare.explanation()
    in_hole = decide(
        rules,
        "accueil",
        Sample("signalement-voirie", "web", {}, longitude=2.45, latitude=48.85),
        places,
    )
    assert in_hole.neighbourhood is None
    assert in_hole.service == "accueil"
    tag = decide(
        rules,
        "accueil",
        Sample(None, "sms", {"nature": "tag", "description": "tag injurieux"}),
        places,
    )
    assert tag.service == "proprete"
    assert (
        decide(rules, "accueil", Sample(None, "mail", {"nature": "autre"}), places).service
        == "courrier"
    )


@pytest.fixture
async def routing(data_dir: Path) -> AsyncIterator[tuple[httpx.AsyncClient, InProcessBus]]:
    bus = InProcessBus()
    app = create_app(RoutingSettings(data_dir=data_dir), bus=bus)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, headers=staff()) as client:
        yield client, bus


def received(procedure: str, location: dict[str, float] | None = None) -> Envelope:
    return received_event(procedure, location=location)


async def test_r29_rules_edited_through_the_api_route_the_next_request_without_restart(
    routing: tuple[httpx.AsyncClient, InProcessBus],
) -> None:
    client, bus = routing
    put = await client.put(
        "/v1/neighbourhoods/gare",
        params={"tenant": "admiville"},
        json={"name": "Quartier de la gare", "geometry": GARE},
    )
    assert put.status_code == 204
    table = (await client.get("/v1/routing-table", params={"tenant": "admiville"})).json()
    rules = [
        {"name": r["name"], "conditions": r["conditions"], "service": r["service"]}
        for r in table["rules"]
    ]
    rules.insert(
        0,
        {
            "name": "Voirie de la gare : guichet unique",
            "conditions": {"procedures": ["signalement-voirie"], "neighbourhoods": ["gare"]},
            "service": "guichet-unique",
        },
    )
    saved = await client.put(
        "/v1/rules",
        params={"tenant": "admiville"},
        json={"default_service": "accueil", "rules": rules},
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["rules"][0]["name"] == "Voirie de la gare : guichet unique"

    await bus.publish(
        received("signalement-voirie", location={"latitude": 48.85, "longitude": 2.42})
    )
    await bus.publish(
        received("signalement-voirie", location={"latitude": 48.85, "longitude": 2.35})
    )

    async def routed() -> list[dict[str, Any]] | None:
        items = (await client.get("/v1/inbox", params={"tenant": "admiville"})).json()["items"]
        return items if len(items) == 2 else None

    items = await eventually(routed, what="both reports routed")
    by_service = sorted(i["service"] for i in items)
    assert by_service == [
        "Centre technique municipal, service de la voirie",
        "Direction du guichet unique d'inscription",
    ]


async def test_r29_dry_run_says_where_and_why(
    routing: tuple[httpx.AsyncClient, InProcessBus],
) -> None:
    client, _ = routing
    answer = await client.post(
        "/v1/rules/dry-run",
        params={"tenant": "admiville"},
        json={"procedure": "subvention-quartier", "channel": "counter"},
    )
    assert answer.status_code == 200
    result = answer.json()
    assert result["service"] == "citoyennete"
    assert result["rule"] == 2
    assert "démarche subvention-quartier" in result["explanation"]


async def test_invalid_rules_are_refused_naming_the_faulty_element(
    routing: tuple[httpx.AsyncClient, InProcessBus],
) -> None:
    client, _ = routing
    answer = await client.put(
        "/v1/rules",
        params={"tenant": "admiville"},
        json={
            "default_service": "accueil",
            "rules": [
                {"name": "Bonne règle", "service": "accueil"},
                {"name": "Service inconnu", "service": "piscine"},
                {
                    "name": "Quartier inconnu",
                    "service": "voirie",
                    "conditions": {"neighbourhoods": ["lune"]},
                },
            ],
        },
    )
    assert answer.status_code == 422
    names = [p["name"] for p in answer.json()["invalid-params"]]
    assert names == ["rules[1].service", "rules[2].conditions.neighbourhoods"]
    table = (await client.get("/v1/routing-table", params={"tenant": "admiville"})).json()
    assert len(table["rules"]) == 5, "nothing changed"

    bad_field = await client.put(
        "/v1/rules",
        params={"tenant": "admiville"},
        json={
            "default_service": "accueil",
            "rules": [
                {
                    "name": "Deux tests",
                    "service": "accueil",
                    "conditions": {
                        "fields": [{"field": "nature", "equals": "tag", "contains": "x"}]
                    },
                }
            ],
        },
    )
    assert bad_field.status_code == 422
    assert bad_field.json()["invalid-params"][0]["name"] == "rules[0].conditions.fields[0].contains"


async def test_open_ring_is_refused(routing: tuple[httpx.AsyncClient, InProcessBus]) -> None:
    client, _ = routing
    ring = [[2.3, 48.8], [2.4, 48.8], [2.4, 48.9], [2.3, 48.9]]
    answer = await client.put(
        "/v1/neighbourhoods/x",
        params={"tenant": "admiville"},
        json={"name": "Ouvert", "geometry": {"type": "Polygon", "coordinates": [ring]}},
    )
    assert answer.status_code == 422
    assert "fermé" in answer.json()["invalid-params"][0]["reason"]
