"""HTTP routes of the gateway, under `/v1`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from guichet_gateway.providers import CivilStatus, QuotientFamilialRequest
from guichet_gateway.schemas import (
    AuditPage,
    ProcedureCode,
    QuotientFamilialQuery,
    QuotientFamilialResponse,
    Slug,
)
from guichet_gateway.service import Caller, GatewayService
from guichet_plumbing.auth import CurrentPrincipal, Role, allow
from guichet_plumbing.jsonbody import JsonRoute
from guichet_plumbing.problems import Problem, problem_responses

router = APIRouter(prefix="/v1", route_class=JsonRoute)


async def get_service(request: Request) -> GatewayService:
    # A coroutine: FastAPI would run a plain `def` dependency in its thread pool.
    service = request.app.state.gateway_service
    assert isinstance(service, GatewayService)
    return service


ServiceDep = Annotated[GatewayService, Depends(get_service)]

# Agents who grant rights consult the State's data (R16); the DPO reads the journal.
CONSULT = allow(
    "consult-state-data", roles=[Role.counter_agent, Role.case_handler, Role.service_head]
)
AUDIT = allow("dpo", roles=[Role.dpo])


def _documented(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    responses = problem_responses(*descriptions)
    for status, description in descriptions.items():
        responses[status]["description"] = description
    return responses


@router.get(
    "/quotient-familial",
    dependencies=[CONSULT],
    tags=["quotient familial"],
    summary="Quotient familial CAF ou MSA d'un usager, avec son consentement",
    description="Interroge API Particulier (en bac à sable : les cas de test de l'État) pour "
    "connaître le quotient familial et la composition du foyer d'un usager, à partir de son "
    "état civil. La demande doit indiquer la démarche, une finalité admise et le consentement "
    "de l'usager ; chaque appel, refusé, échoué ou réussi, est inscrit au journal d'audit "
    "(règle R16). La réponse contient des données personnelles : elle n'est jamais mise en "
    "cache.",
    responses=_documented(
        {
            403: "Finalité interdite ou consentement absent (règle R16)",
            404: "Aucun dossier allocataire ne correspond à cette identité",
            422: "Paramètres invalides, finalité inconnue ou état civil refusé",
            429: "Le fournisseur limite les demandes ; voir Retry-After",
            502: "Le fournisseur a renvoyé une réponse inexploitable",
            504: "Le fournisseur n'a pas répondu à temps",
        }
    ),
)
async def get_quotient_familial(
    query: Annotated[QuotientFamilialQuery, Query()],
    service: ServiceDep,
    response: Response,
    principal: CurrentPrincipal,
) -> QuotientFamilialResponse:
    errors = query.cross_field_errors()
    if errors:
        names = ", ".join(dict.fromkeys(e.name for e in errors))
        raise Problem(
            422,
            "validation-error",
            "Données invalides",
            f"Certains champs sont absents ou incorrects : {names}. Corrigez-les puis "
            "renvoyez la demande.",
            invalid_params=errors,
        )
    caller = Caller(
        tenant=query.tenant,
        procedure=query.procedure,
        purpose=query.purpose,
        consent=query.consent,
        recipient=query.recipient,
        agent_id=principal.subject,
    )
    request = QuotientFamilialRequest(
        civil_status=CivilStatus(
            birth_name=query.birth_name,
            usage_name=query.usage_name,
            first_names=tuple(query.first_names),
            sex=query.sex,
            birth_year=query.birth_year,
            birth_month=query.birth_month,
            birth_day=query.birth_day,
            birth_country_code=query.birth_country_code,
            birth_municipality_code=query.birth_municipality_code,
            birth_municipality_name=query.birth_municipality_name,
            birth_department_code=query.birth_department_code,
        ),
        recipient=query.recipient,
        year=query.year,
        month=query.month,
    )
    result = await service.quotient_familial(caller, request)
    response.headers["Cache-Control"] = "no-store"
    return result


@router.get(
    "/audit",
    dependencies=[AUDIT],
    tags=["journal d'audit"],
    summary="Journal des consultations de données de l'État",
    description="Liste les consultations tracées (qui, quand, pour quelle démarche et quelle "
    "finalité, avec quelle issue), des plus récentes aux plus anciennes. Ne contient aucune "
    "donnée personnelle de l'usager (règle R16).",
    responses=_documented({400: "Curseur de pagination invalide", 422: "Paramètres invalides"}),
)
async def list_audit_entries(
    service: ServiceDep,
    tenant: Annotated[Slug, Query(description="Collectivité dont on lit le journal.")],
    procedure: Annotated[
        ProcedureCode | None,
        Query(description="Ne garder que les consultations faites pour cette démarche."),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=512, description="Curseur rendu par la page précédente (`next_cursor`)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Taille de la page.")] = 50,
) -> AuditPage:
    return await service.audit_page(tenant=tenant, procedure=procedure, cursor=cursor, limit=limit)
