"""Notifications' HTTP routes."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from guichet_notifications.schemas import DeliveryList
from guichet_notifications.service import Deliveries
from guichet_plumbing.auth import CurrentPrincipal, Role, allow
from guichet_plumbing.jsonbody import JsonRoute
from guichet_plumbing.problems import Problem, problem_responses

router = APIRouter(prefix="/v1", route_class=JsonRoute)

# Agents of the request's service only (R21), checked in the service layer.
HANDLE = allow("handle", roles=[Role.case_handler, Role.service_head])


@router.get(
    "/deliveries",
    dependencies=[HANDLE],
    response_model=DeliveryList,
    summary="Envois faits (ou dus) à l'usager pour une demande",
    tags=["envois"],
    responses=problem_responses(400, 422),
)
async def list_deliveries(
    request: Request,
    principal: CurrentPrincipal,
    request_id: Annotated[
        uuid.UUID | None, Query(alias="request", description="Identifiant de la demande.")
    ] = None,
    tracking_code: Annotated[
        str | None, Query(pattern=r"^[0-9A-Z]{4}(-[0-9A-Z]{4}){3}$", description="Numéro de suivi.")
    ] = None,
) -> DeliveryList:
    if request_id is None and tracking_code is None:
        raise Problem(
            400,
            "filter-required",
            "Filtre obligatoire",
            "Précisez la demande : paramètre request (identifiant) ou tracking_code "
            "(numéro de suivi).",
        )
    deliveries: Deliveries = request.app.state.deliveries
    return await deliveries.list(
        request_id=request_id, tracking_code=tracking_code, principal=principal
    )
