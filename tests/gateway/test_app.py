"""App shape, sandbox replay rules and settings of the gateway."""

from __future__ import annotations

import contextlib
import json
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi import FastAPI
from pydantic import ValidationError

from guichet_gateway.app import create_app
from guichet_gateway.providers import (
    CivilStatus,
    IdentityNotFound,
    QuotientFamilialRequest,
    SandboxQuotientFamilialProvider,
    load_cases,
    packaged_cases_dir,
)
from guichet_gateway.settings import GatewaySettings
from guichet_plumbing.auth import generate_keys
from tests.gateway.conftest import (
    AGENT_42,
    CALLER,
    DINUM_SIRET,
    query_for,
    running,
    staging_case,
)
from tests.support import serve

NOMINAL = "200-identite-cas-nominal.yaml"


async def test_works_mounted_under_gateway_prefix(settings: GatewaySettings) -> None:
    gateway = create_app(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # A mounted app's lifespan is its host's to run (as the launcher does).
        async with gateway.router.lifespan_context(gateway):
            yield

    host = FastAPI(lifespan=lifespan)
    host.mount("/gateway", gateway)
    params = query_for(staging_case(NOMINAL)["params"])
    async with (
        serve(host) as base_url,
        httpx.AsyncClient(base_url=base_url, headers=AGENT_42) as client,
    ):
        ok = await client.get("/gateway/v1/quotient-familial", params=params)
        refused = await client.get(
            "/gateway/v1/quotient-familial",
            params=[*(p for p in params if p[0] != "purpose"), ("purpose", "marketing")],
        )
        audit = await client.get("/gateway/v1/audit", params={"tenant": CALLER["tenant"]})
        ready = await client.get("/gateway/ready")

    assert ok.status_code == 200, ok.text
    assert refused.status_code == 422
    assert refused.json()["instance"] == "/gateway/v1/quotient-familial"
    assert [i["id"] for i in audit.json()["items"]][-1] == ok.json()["consultation_id"]
    assert ready.status_code == 200


async def test_openapi_has_stable_operation_ids_and_documents_problems(
    settings: GatewaySettings,
) -> None:
    async with running(settings) as gateway:
        spec = (await gateway.client.get("/openapi.json")).json()

    qf = spec["paths"]["/v1/quotient-familial"]["get"]
    audit = spec["paths"]["/v1/audit"]["get"]
    assert qf["operationId"] == "get_quotient_familial"
    assert audit["operationId"] == "list_audit_entries"
    for status in ("403", "404", "422", "429", "502", "504"):
        content = qf["responses"][status]["content"]
        assert content["application/problem+json"]["schema"]["$ref"].endswith("ProblemDetails")
    assert "400" in audit["responses"]
    names = {p["name"] for p in qf["parameters"]}
    assert {
        "birth_name",
        "first_names",
        "sex",
        "birth_country_code",
        "tenant",
        "procedure",
        "purpose",
        "consent",
        "recipient",
    } <= names
    assert all(p.get("description") for p in qf["parameters"])


async def test_quotient_of_zero_means_not_computed(data_dir: Path, tmp_path: Path) -> None:
    # The State's staging data has no such case; derive one from the nominal case.
    case = staging_case(NOMINAL)
    payload = json.loads(case["payload"])
    payload["data"]["quotient_familial"]["valeur"] = 0
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "200-qf-zero.yaml").write_text(
        yaml.safe_dump({"params": case["params"], "status": 200, "payload": json.dumps(payload)})
    )
    settings = GatewaySettings(env="test", data_dir=data_dir, sandbox_cases_dir=cases)

    async with running(settings) as gateway:
        response = await gateway.quotient(NOMINAL)

    assert response.status_code == 200
    assert response.json()["quotient_familial"]["value"] is None
    assert response.json()["quotient_familial"]["computed"] is False


async def test_unusable_provider_payload_is_a_502(data_dir: Path, tmp_path: Path) -> None:
    case = staging_case(NOMINAL)
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "200-broken.yaml").write_text(
        yaml.safe_dump(
            {"params": case["params"], "status": 200, "payload": '{"data": {"enfants": []}}'}
        )
    )
    settings = GatewaySettings(env="test", data_dir=data_dir, sandbox_cases_dir=cases)

    async with running(settings) as gateway:
        response = await gateway.quotient(NOMINAL)

    assert response.status_code == 502
    assert response.json()["type"].endswith("/provider-error")


def nominal_request(**changes: object) -> QuotientFamilialRequest:
    params = staging_case(NOMINAL)["params"]
    status = CivilStatus(
        birth_name=params["nomNaissance"],
        first_names=tuple(params["prenoms"]),
        sex=params["sexeEtatCivil"],
        birth_country_code=params["codeCogInseePaysNaissance"],
        birth_year=params["anneeDateNaissance"],
        birth_month=params["moisDateNaissance"],
        birth_day=params["jourDateNaissance"],
        birth_municipality_code=params["codeCogInseeCommuneNaissance"],
    )
    fields = {**status.__dict__, **changes}
    return QuotientFamilialRequest(
        civil_status=CivilStatus(**fields),  # type: ignore[arg-type]
        recipient=DINUM_SIRET,
    )


async def test_sandbox_matches_exactly_modulo_unicode_normalisation() -> None:
    sandbox = SandboxQuotientFamilialProvider.from_directory()
    decomposed = tuple(
        unicodedata.normalize("NFD", n) for n in staging_case(NOMINAL)["params"]["prenoms"]
    )
    assert decomposed != tuple(staging_case(NOMINAL)["params"]["prenoms"])

    assert (await sandbox.fetch(nominal_request(first_names=decomposed))).beneficiaries
    with pytest.raises(IdentityNotFound):
        await sandbox.fetch(nominal_request(birth_name="Lefebvre"))
    with pytest.raises(IdentityNotFound):
        await sandbox.fetch(nominal_request(usage_name="MARTIN"))


def test_sandbox_serves_every_packaged_case() -> None:
    files = [f for f in packaged_cases_dir().iterdir() if f.name.endswith(".yaml")]
    sandbox = SandboxQuotientFamilialProvider.from_directory()

    assert len(sandbox.cases) == len(files) == len(load_cases(files))


def test_sandbox_refuses_two_cases_with_the_same_params(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(packaged_cases_dir().joinpath(NOMINAL).read_text("utf-8"))

    with pytest.raises(ValueError, match="share their params"):
        SandboxQuotientFamilialProvider.from_directory(tmp_path)


def test_packaged_cases_carry_their_licence() -> None:
    sandbox = packaged_cases_dir().parent
    assert "MIT License" in sandbox.joinpath("LICENSE").read_text("utf-8")
    assert "Etalab" in sandbox.joinpath("LICENSE").read_text("utf-8")
    assert "2045a4bd" in sandbox.joinpath("README.md").read_text("utf-8")


def test_sandbox_provider_is_refused_in_production(data_dir: Path) -> None:
    with pytest.raises(ValidationError, match="sandbox"):
        GatewaySettings(
            env="production",
            data_dir=data_dir,
            auth_signing_keys=generate_keys(),
            demo_logins=False,
        )
