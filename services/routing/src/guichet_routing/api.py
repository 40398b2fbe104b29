"""Routing's HTTP routes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from guichet_plumbing.auth import PUBLIC, CurrentPrincipal, Role, allow
from guichet_plumbing.db import Database
from guichet_plumbing.jsonbody import JsonRoute
from guichet_plumbing.problems import problem_responses
from guichet_routing import incidents, service
from guichet_routing.repository import InboxFilter
from guichet_routing.schemas import (
    CODE_PATTERN,
    TENANT_PATTERN,
    AgentWrite,
    AssignmentPublic,
    CommentWrite,
    DryRunResult,
    DryRunSample,
    Inbox,
    IncidentPolicyPublic,
    IncidentPolicyWrite,
    NeighbourhoodPublic,
    NeighbourhoodWrite,
    RoutingTable,
    RulesWrite,
    ServiceSettingsWrite,
    TeamWrite,
    TransitionCreate,
    WorkflowPublic,
    WorkflowWrite,
)

router = APIRouter(prefix="/v1", route_class=JsonRoute)

Channel = Literal["web", "email", "phone", "counter", "mail", "sms"]

# Who may call each route; which service's files, in the service layer (R21).
HANDLE = allow("handle", roles=[Role.case_handler, Role.service_head])
CONSULT = allow(
    "consult",
    roles=[Role.counter_agent, Role.case_handler, Role.service_head, Role.administrator],
)
CONFIGURE_SERVICE = allow("configure-service", roles=[Role.service_head, Role.administrator])
ADMINISTER = allow("administer", roles=[Role.administrator])


def _db(request: Request) -> Database:
    db: Database = request.app.state.runtime.db
    return db


@router.get(
    "/inbox",
    dependencies=[HANDLE],
    response_model=Inbox,
    summary="Corbeille des agents : toutes les demandes, quel que soit leur canal (R26)",
    description="Les plus récentes d'abord (date de réception, puis identifiant) ; pagination "
    "par curseur opaque, stable quand de nouvelles demandes arrivent ; décompte par statut.",
    tags=["corbeille"],
    responses=problem_responses(400, 404, 422),
)
async def get_inbox(
    request: Request,
    principal: CurrentPrincipal,
    tenant: Tenant,
    service_code: Annotated[
        str | None, Query(alias="service", pattern=CODE_PATTERN, description="Code du service.")
    ] = None,
    status: Annotated[
        str | None,
        Query(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="Code de statut du circuit."),
    ] = None,
    channel: Annotated[Channel | None, Query(description="Canal d'arrivée.")] = None,
    procedure: Annotated[str | None, Query(pattern=CODE_PATTERN, description="Démarche.")] = None,
    neighbourhood: Annotated[
        str | None, Query(pattern=CODE_PATTERN, description="Quartier.")
    ] = None,
    team: Annotated[
        str | None, Query(pattern=CODE_PATTERN, description="Équipe (avec son service).")
    ] = None,
    agent: Annotated[
        str | None, Query(max_length=200, description="Attribuées à cet agent.")
    ] = None,
    mine: Annotated[bool, Query(description="Seulement celles qui me sont attribuées.")] = False,
    q: Annotated[
        str | None,
        Query(min_length=2, max_length=100, description="Texte : numéro de suivi, nom, démarche."),
    ] = None,
    overdue: Annotated[
        bool, Query(description="Seulement celles qui ont dépassé l'engagement du service.")
    ] = False,
    cursor: Annotated[
        str | None, Query(max_length=200, description="Curseur de la page suivante.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Taille de page.")] = 50,
    duplicates: Annotated[
        bool,
        Query(
            description="Montrer aussi les signalements en doublon : par défaut un incident "
            "n'apparaît qu'une fois, avec son nombre de signalements (R30)."
        ),
    ] = False,
) -> Inbox:
    where = InboxFilter(
        tenant=tenant,
        service=service_code,
        team=team,
        status=status,
        channel=channel,
        procedure=procedure,
        neighbourhood=neighbourhood,
        # The token says who "me" is: the route is for agents only.
        agent=principal.subject if mine else agent,
        text=q,
        overdue_at=datetime.now(UTC) if overdue else None,
        duplicates=duplicates,
    )
    return await service.inbox(_db(request), where, cursor=cursor, limit=limit, principal=principal)


@router.get(
    "/routing-table",
    dependencies=[CONSULT],
    response_model=RoutingTable,
    summary="Services et règles d'aiguillage d'une collectivité",
    tags=["aiguillage"],
    responses=problem_responses(404, 422),
)
async def get_routing_table(
    request: Request,
    tenant: Annotated[str, Query(pattern=TENANT_PATTERN, description="Code de la collectivité.")],
) -> RoutingTable:
    return await service.routing_table(_db(request), tenant)


Tenant = Annotated[str, Query(pattern=TENANT_PATTERN, description="Code de la collectivité.")]


@router.put(
    "/rules",
    dependencies=[ADMINISTER],
    response_model=RoutingTable,
    summary="Remplacer les règles d'aiguillage (ordonnées : la première qui convient l'emporte)",
    description="Validées à l'écriture ; appliquées à la demande suivante, sans redémarrage.",
    tags=["aiguillage"],
    responses=problem_responses(404, 422),
)
async def put_rules(request: Request, tenant: Tenant, body: RulesWrite) -> RoutingTable:
    return await service.put_rules(_db(request), tenant, body)


@router.post(
    "/rules/dry-run",
    dependencies=[ADMINISTER],
    response_model=DryRunResult,
    summary="Où irait une demande comme celle-ci, et pourquoi (sans rien envoyer)",
    tags=["aiguillage"],
    responses=problem_responses(404, 422),
)
async def dry_run_rules(request: Request, tenant: Tenant, body: DryRunSample) -> DryRunResult:
    return await service.dry_run(_db(request), tenant, body)


@router.get(
    "/neighbourhoods",
    dependencies=[PUBLIC],
    response_model=list[NeighbourhoodPublic],
    summary="Quartiers de la collectivité (GeoJSON)",
    tags=["aiguillage"],
    responses=problem_responses(404, 422),
)
async def list_neighbourhoods(request: Request, tenant: Tenant) -> list[NeighbourhoodPublic]:
    return await service.list_neighbourhoods(_db(request), tenant)


@router.put(
    "/neighbourhoods/{code}",
    dependencies=[ADMINISTER],
    status_code=204,
    response_class=Response,
    summary="Déclarer ou redessiner un quartier (polygone GeoJSON)",
    tags=["aiguillage"],
    responses=problem_responses(404, 422),
)
async def put_neighbourhood(
    request: Request,
    tenant: Tenant,
    body: NeighbourhoodWrite,
    code: Annotated[str, Path(pattern=CODE_PATTERN, description="Code du quartier.")],
) -> Response:
    await service.put_neighbourhood(_db(request), tenant, code, body)
    return Response(status_code=204)


Procedure = Annotated[str, Path(pattern=CODE_PATTERN, description="Code de la démarche.")]


@router.get(
    "/workflows/{procedure}",
    dependencies=[CONSULT],
    response_model=WorkflowPublic,
    summary="Circuit de traitement en vigueur pour une démarche",
    tags=["circuits"],
    responses=problem_responses(404, 422),
)
async def get_workflow(request: Request, tenant: Tenant, procedure: Procedure) -> WorkflowPublic:
    return await service.get_workflow(_db(request), tenant, procedure)


@router.put(
    "/workflows/{procedure}",
    dependencies=[ADMINISTER],
    response_model=WorkflowPublic,
    status_code=201,
    summary="Publier une nouvelle version du circuit (statuts, transitions, actions)",
    description="Validée à l'écriture. Les demandes en cours gardent leur version ; "
    "les suivantes prennent celle-ci, sans redémarrage.",
    tags=["circuits"],
    responses=problem_responses(404, 422),
)
async def put_workflow(
    request: Request, tenant: Tenant, procedure: Procedure, body: WorkflowWrite
) -> WorkflowPublic:
    return await service.put_workflow(_db(request), tenant, procedure, body)


@router.get(
    "/requests/{request_id}",
    dependencies=[HANDLE],
    response_model=AssignmentPublic,
    summary="Où en est une demande dans son circuit, et ce qu'on peut en faire",
    tags=["corbeille"],
    responses=problem_responses(404, 422),
)
async def get_assignment(
    request: Request, principal: CurrentPrincipal, request_id: uuid.UUID
) -> AssignmentPublic:
    return await service.assignment(_db(request), request_id, principal)


@router.post(
    "/requests/{request_id}/transitions",
    dependencies=[HANDLE],
    response_model=AssignmentPublic,
    summary="Déclencher une transition du circuit",
    tags=["corbeille"],
    description="Une transition peut être réservée à des rôles ou à des services (403 sinon) ; "
    "les transitions automatiques ne se déclenchent pas à la main.",
    responses=problem_responses(403, 404, 409, 422),
)
async def fire_transition(
    request: Request, principal: CurrentPrincipal, request_id: uuid.UUID, body: TransitionCreate
) -> AssignmentPublic:
    return await service.fire(_db(request), request_id, body, principal)


@router.put(
    "/requests/{request_id}/agent",
    dependencies=[HANDLE],
    response_model=AssignmentPublic,
    summary="Attribuer, réattribuer ou remettre au service",
    tags=["corbeille"],
    responses=problem_responses(404, 422),
)
async def put_agent(
    request: Request, principal: CurrentPrincipal, request_id: uuid.UUID, body: AgentWrite
) -> AssignmentPublic:
    return await service.assign_agent(_db(request), request_id, body.agent, principal)


@router.post(
    "/requests/{request_id}/comments",
    dependencies=[HANDLE],
    status_code=204,
    response_class=Response,
    summary="Commentaire interne entre agents",
    tags=["corbeille"],
    responses=problem_responses(404, 422),
)
async def post_comment(
    request: Request, principal: CurrentPrincipal, request_id: uuid.UUID, body: CommentWrite
) -> Response:
    await service.comment(_db(request), request_id, body.text, principal)
    return Response(status_code=204)


@router.put(
    "/services/{code}",
    dependencies=[CONFIGURE_SERVICE],
    status_code=204,
    response_class=Response,
    summary="Engagement de réponse et mode d'alerte d'un service (R28)",
    tags=["aiguillage"],
    responses=problem_responses(404, 422),
)
async def put_service_settings(
    request: Request,
    principal: CurrentPrincipal,
    tenant: Tenant,
    body: ServiceSettingsWrite,
    code: Annotated[str, Path(pattern=CODE_PATTERN)],
) -> Response:
    await service.configure_service(_db(request), tenant, code, body, principal)
    return Response(status_code=204)


@router.put(
    "/services/{service_code}/teams/{code}",
    dependencies=[CONFIGURE_SERVICE],
    status_code=204,
    response_class=Response,
    summary="Déclarer ou renommer une équipe d'un service",
    description="Les règles d'aiguillage peuvent ensuite envoyer les demandes à cette équipe.",
    tags=["aiguillage"],
    responses=problem_responses(404, 422),
)
async def put_team(
    request: Request,
    principal: CurrentPrincipal,
    tenant: Tenant,
    body: TeamWrite,
    service_code: Annotated[str, Path(pattern=CODE_PATTERN, description="Code du service.")],
    code: Annotated[str, Path(pattern=CODE_PATTERN, description="Code de l'équipe.")],
) -> Response:
    await service.put_team(_db(request), tenant, service_code, code, body, principal)
    return Response(status_code=204)


PolicyProcedure = Annotated[
    str | None,
    Query(pattern=CODE_PATTERN, description="Démarche ; absente : toute la collectivité."),
]


@router.get(
    "/incident-policy",
    dependencies=[CONSULT],
    response_model=IncidentPolicyPublic,
    summary="Rayon et fenêtre de regroupement des signalements en incidents (R30)",
    tags=["aiguillage"],
    responses=problem_responses(404, 422),
)
async def get_incident_policy(
    request: Request, tenant: Tenant, procedure: PolicyProcedure = None
) -> IncidentPolicyPublic:
    return await incidents.get_policy(_db(request), tenant, procedure)


@router.put(
    "/incident-policy",
    dependencies=[ADMINISTER],
    response_model=IncidentPolicyPublic,
    summary="Régler le regroupement des signalements, pour la collectivité ou une démarche",
    description="Appliqué au signalement suivant ; les incidents ouverts gardent les leurs.",
    tags=["aiguillage"],
    responses=problem_responses(404, 422),
)
async def put_incident_policy(
    request: Request, tenant: Tenant, body: IncidentPolicyWrite, procedure: PolicyProcedure = None
) -> IncidentPolicyPublic:
    return await incidents.put_policy(_db(request), tenant, procedure, body)
