"""Gateway fixtures: the app served over real HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from guichet_gateway.app import create_app
from guichet_gateway.providers import QuotientFamilialProvider, packaged_cases_dir
from guichet_gateway.settings import GatewaySettings
from guichet_plumbing.auth import Role
from guichet_plumbing.bus import Bus
from tests.identity import agent, bearer
from tests.support import serve

# API Particulier's parameter names → ours.
UPSTREAM_NAMES = {
    "nomNaissance": "birth_name",
    "nomUsage": "usage_name",
    "prenoms": "first_names",
    "sexeEtatCivil": "sex",
    "anneeDateNaissance": "birth_year",
    "moisDateNaissance": "birth_month",
    "jourDateNaissance": "birth_day",
    "codeCogInseePaysNaissance": "birth_country_code",
    "codeCogInseeCommuneNaissance": "birth_municipality_code",
    "nomCommuneNaissance": "birth_municipality_name",
    "codeCogInseeDepartementNaissance": "birth_department_code",
    "annee": "year",
    "mois": "month",
}

DINUM_SIRET = "13002526500013"

# An agent of the test commune who consults for a tariff and reads the audit trail.
AGENT_42 = bearer(agent(Role.case_handler, Role.dpo, tenant="ville-exemple", subject="agent-42"))

CALLER: dict[str, str] = {
    "tenant": "ville-exemple",
    "procedure": "tarif-cantine",
    "purpose": "tariff_granting",
    "consent": "true",
    "recipient": DINUM_SIRET,
}


def staging_case(name: str) -> dict[str, Any]:
    """A staging case as published by the State (the packaged, unmodified copy)."""
    case: dict[str, Any] = yaml.safe_load(
        packaged_cases_dir().joinpath(name).read_text(encoding="utf-8")
    )
    return case


def staging_case_names(status: int | None = None) -> list[str]:
    names = sorted(f.name for f in packaged_cases_dir().iterdir() if f.name.endswith(".yaml"))
    if status is None:
        return names
    return [n for n in names if staging_case(n)["status"] == status]


def query_for(params: dict[str, Any], **caller: str) -> list[tuple[str, str]]:
    """Our query string for a case's upstream params, with the caller's fields."""
    query = list({**CALLER, **caller}.items())
    for upstream, value in params.items():
        ours = UPSTREAM_NAMES[upstream]
        values = value if isinstance(value, list) else [value]
        query.extend((ours, str(v)) for v in values)
    return query


@dataclass
class Gateway:
    client: httpx.AsyncClient
    app: FastAPI
    settings: GatewaySettings

    async def quotient(
        self, case: str, headers: dict[str, str] | None = None, **caller: str
    ) -> httpx.Response:
        params = query_for(staging_case(case)["params"], **caller)
        return await self.client.get("/v1/quotient-familial", params=params, headers=headers)


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, data_dir: Path) -> GatewaySettings:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_database")("gateway")
        return GatewaySettings(env="test", data_dir=data_dir, database_url=url)
    return GatewaySettings(env="test", data_dir=data_dir)


@contextlib.asynccontextmanager
async def running(
    settings: GatewaySettings,
    *,
    bus: Bus | None = None,
    provider: QuotientFamilialProvider | None = None,
) -> AsyncIterator[Gateway]:
    app = create_app(settings, bus=bus, provider=provider)
    async with (
        serve(app) as base_url,
        httpx.AsyncClient(base_url=base_url, headers=AGENT_42) as client,
    ):
        yield Gateway(client, app, settings)


@pytest.fixture
async def gateway(settings: GatewaySettings) -> AsyncIterator[Gateway]:
    async with running(settings) as gw:
        yield gw
