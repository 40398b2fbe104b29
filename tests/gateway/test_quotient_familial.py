"""`GET /v1/quotient-familial` over real HTTP, answered from the State's staging cases."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.gateway.conftest import (
    CALLER,
    Gateway,
    query_for,
    staging_case,
    staging_case_names,
)

PROBLEM = "application/problem+json"
NOMINAL = "200-identite-cas-nominal.yaml"


def person_view(upstream: dict[str, object]) -> dict[str, object]:
    return {
        "birth_name": upstream["nom_naissance"],
        "usage_name": upstream["nom_usage"],
        "first_names": upstream["prenoms"],
        "birth_date": upstream["date_naissance"],
        "sex": upstream["sexe"],
    }


@pytest.mark.parametrize("case", staging_case_names(200))
async def test_staging_200_case_is_served_as_the_state_publishes_it(
    gateway: Gateway, case: str
) -> None:
    published = json.loads(staging_case(case)["payload"])["data"]

    response = await gateway.quotient(case)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    qf = published["quotient_familial"]
    assert body["quotient_familial"] == {
        "supplier": qf["fournisseur"],
        "value": qf["valeur"],
        "computed": True,
        "year": qf["annee"],
        "month": qf["mois"],
        "computation_year": qf["annee_calcul"],
        "computation_month": qf["mois_calcul"],
    }
    assert body["beneficiaries"] == [person_view(p) for p in published["allocataires"]]
    assert body["children"] == [person_view(p) for p in published["enfants"]]
    address = published["adresse"]
    assert body["address"] == {
        "addressee": address["destinataire"],
        "addressee_complement": address["complement_information"],
        "building_complement": address["complement_information_geographique"],
        "street": address["numero_libelle_voie"],
        "locality": address["lieu_dit"],
        "postcode_and_city": address["code_postal_ville"],
        "country": address["pays"],
    }
    assert body["provider"] == "sandbox"
    uuid.UUID(body["consultation_id"])


async def test_period_parameters_select_the_staging_case_for_that_month(gateway: Gateway) -> None:
    case = "200-couple-2_enfants-qf_msa_150_mai23.yaml"
    params = staging_case(case)["params"]
    published = json.loads(staging_case(case)["payload"])["data"]["quotient_familial"]

    with_period = await gateway.quotient(case)
    without_period = await gateway.client.get(
        "/v1/quotient-familial",
        params=query_for({k: v for k, v in params.items() if k not in {"annee", "mois"}}),
    )

    assert with_period.status_code == 200
    assert (
        with_period.json()["quotient_familial"]["year"],
        with_period.json()["quotient_familial"]["month"],
    ) == (params["annee"], params["mois"])
    assert with_period.json()["quotient_familial"]["value"] == published["valeur"]
    # Staging matches parameters exactly: the same person without a period is another case.
    assert without_period.status_code == 404


def sendable(names: list[str]) -> list[str]:
    return [n for n in names if "prenoms" in staging_case(n)["params"]]


@pytest.mark.parametrize("case", sendable(staging_case_names(404)))
async def test_staging_404_case_is_a_not_found_problem(gateway: Gateway, case: str) -> None:
    response = await gateway.quotient(case)

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"].endswith("/quotient-familial-not-found")
    assert "attestation" in problem["detail"]


async def test_staging_case_without_first_names_is_refused_like_upstream(
    gateway: Gateway,
) -> None:
    # `404.yaml` has no first names: API Particulier requires them and refuses the call
    # before any matching, so no conforming client reaches that case; we refuse it too.
    assert "prenoms" not in staging_case("404.yaml")["params"]

    response = await gateway.quotient("404.yaml")

    assert response.status_code == 422
    assert "first_names" in [p["name"] for p in response.json()["invalid-params"]]


async def test_identity_matching_no_case_is_not_found(gateway: Gateway) -> None:
    params = dict(staging_case(NOMINAL)["params"])
    params["jourDateNaissance"] = params["jourDateNaissance"] - 1

    response = await gateway.client.get("/v1/quotient-familial", params=query_for(params))

    assert response.status_code == 404
    assert response.json()["type"].endswith("/quotient-familial-not-found")


async def test_staging_429_case_is_a_rate_limit_problem_with_retry_after(
    gateway: Gateway,
) -> None:
    response = await gateway.quotient("429.yaml")

    assert response.status_code == 429
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["retry-after"] == str(gateway.settings.rate_limit_retry_after)
    problem = response.json()
    assert problem["type"].endswith("/provider-rate-limited")
    assert f"{gateway.settings.rate_limit_retry_after} secondes" in problem["detail"]


@pytest.mark.parametrize(
    ("case", "status", "slug"),
    [
        ("502.yaml", 502, "provider-error"),
        ("504.yaml", 504, "provider-timeout"),
    ],
)
async def test_staging_upstream_failure_is_a_gateway_problem_never_500(
    gateway: Gateway, case: str, status: int, slug: str
) -> None:
    assert staging_case(case)["status"] == status

    response = await gateway.quotient(case)

    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith(f"/{slug}")
    assert "attestation de quotient familial" in response.json()["detail"]


async def test_r16_consent_not_given_is_refused(gateway: Gateway) -> None:
    response = await gateway.quotient(NOMINAL, consent="false")

    assert response.status_code == 403
    problem = response.json()
    assert problem["type"].endswith("/consent-missing")
    assert "R16" in problem["detail"]
    assert "quotient_familial" not in problem


async def test_r16_consent_is_mandatory(gateway: Gateway) -> None:
    params = [(k, v) for k, v in query_for(staging_case(NOMINAL)["params"]) if k != "consent"]

    response = await gateway.client.get("/v1/quotient-familial", params=params)

    assert response.status_code == 422
    assert [p["name"] for p in response.json()["invalid-params"]] == ["consent"]


@pytest.mark.parametrize("purpose", ["fraud_detection", "sanction"])
async def test_r16_forbidden_purpose_is_refused(gateway: Gateway, purpose: str) -> None:
    response = await gateway.quotient(NOMINAL, purpose=purpose)

    assert response.status_code == 403
    problem = response.json()
    assert problem["type"].endswith("/purpose-forbidden")
    assert "R16" in problem["detail"]
    assert "tariff_granting" in problem["detail"]


async def test_r16_unknown_purpose_is_refused(gateway: Gateway) -> None:
    response = await gateway.quotient(NOMINAL, purpose="marketing")

    assert response.status_code == 422
    assert response.json()["type"].endswith("/purpose-unknown")
    assert response.json()["invalid-params"][0]["name"] == "purpose"


@pytest.mark.parametrize("purpose", ["benefit_granting", "eligibility_information"])
async def test_r16_r17_granting_and_informing_of_a_right_are_allowed_purposes(
    gateway: Gateway, purpose: str
) -> None:
    response = await gateway.quotient(NOMINAL, purpose=purpose)

    assert response.status_code == 200


@pytest.mark.parametrize(
    "recipient",
    [
        "13002526500014",  # Luhn key wrong
        "1300252650001",  # 13 digits
        "1300252650001A",
        "35600000012345",  # La Poste's SIREN, but neither rule holds
    ],
)
async def test_invalid_recipient_siret_is_refused(gateway: Gateway, recipient: str) -> None:
    response = await gateway.quotient(NOMINAL, recipient=recipient)

    assert response.status_code == 422
    params = response.json()["invalid-params"]
    assert [p["name"] for p in params] == ["recipient"]
    assert "SIRET invalide" in params[0]["reason"]


async def test_la_poste_siret_is_accepted_despite_its_luhn_key(gateway: Gateway) -> None:
    # Digit sum 50, a multiple of 5: INSEE's rule for La Poste establishments.
    response = await gateway.quotient(NOMINAL, recipient="35600000049837")

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"codeCogInseeCommuneNaissance": None}, "birth_municipality_code"),
        (
            {"codeCogInseeCommuneNaissance": None, "nomCommuneNaissance": "Sedan"},
            "birth_department_code",
        ),
        ({"codeCogInseePaysNaissance": "99404"}, "birth_country_code"),
        ({"moisDateNaissance": None}, "birth_day"),
        ({"jourDateNaissance": 31, "moisDateNaissance": 2}, "birth_day"),
        ({"prenoms": ["A", "B", "C", "D"]}, "first_names"),
        ({"sexeEtatCivil": "X"}, "sex"),
        ({"codeCogInseePaysNaissance": "FR"}, "birth_country_code"),
    ],
)
async def test_incoherent_civil_status_is_refused_before_any_call(
    gateway: Gateway, change: dict[str, object], field: str
) -> None:
    params = {**staging_case(NOMINAL)["params"], **change}
    params = {k: v for k, v in params.items() if v is not None}

    response = await gateway.client.get("/v1/quotient-familial", params=query_for(params))

    assert response.status_code == 422, response.text
    assert field in [p["name"] for p in response.json()["invalid-params"]]
    audit = await gateway.client.get("/v1/audit", params={"tenant": CALLER["tenant"]})
    assert audit.json()["items"] == []


async def test_upstream_parameter_names_are_refused(gateway: Gateway) -> None:
    params = [*query_for(staging_case(NOMINAL)["params"]), ("nomNaissance", "LEFEBVRE")]

    response = await gateway.client.get("/v1/quotient-familial", params=params)

    assert response.status_code == 422
    assert "nomNaissance" in [p["name"] for p in response.json()["invalid-params"]]
