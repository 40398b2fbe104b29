"""Intake's HTTP routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response

from guichet_intake import service
from guichet_intake.schemas import (
    TENANT_PATTERN,
    ProcedureList,
    RequestCreate,
    RequestCreated,
    RequestPublic,
)
from guichet_plumbing import idempotency
from guichet_plumbing.db import Database
from guichet_plumbing.problems import problem_responses

router = APIRouter(prefix="/v1")


def _db(request: Request) -> Database:
    db: Database = request.app.state.runtime.db
    return db


@router.post(
    "/requests",
    status_code=201,
    response_model=RequestCreated,
    summary="Déposer une demande (tous canaux)",
    description="Horodate la demande, la conserve, et renvoie l'accusé de réception avec ses "
    "mentions légales. Rejouer la même requête avec le même en-tête "
    "`Idempotency-Key` renvoie la même réponse sans créer de doublon.",
    tags=["demandes"],
    responses=problem_responses(400, 404, 409, 413, 422),
)
async def create_request(
    request: Request,
    body: RequestCreate,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", max_length=255, description="Clé choisie par le client."),
    ] = None,
) -> Response:
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    stored = await service.submit(_db(request), body, key)
    created = RequestCreated.model_validate_json(stored.body)
    location = f"{request.scope.get('root_path', '')}/v1/requests/{created.tracking_code}"
    return Response(
        stored.body,
        status_code=stored.status_code,
        media_type="application/json",
        headers={"Location": location},
    )


@router.get(
    "/requests/{tracking_code}",
    response_model=RequestPublic,
    summary="Suivre une demande par son numéro de suivi",
    tags=["demandes"],
    responses=problem_responses(404, 422),
)
async def get_request(
    request: Request,
    tracking_code: Annotated[
        str,
        Path(
            pattern=r"^[0-9A-Za-z -]{16,24}$",
            description="Numéro de suivi (ex. 7KQ2-9XWM-PT4R-H3VD).",
        ),
    ],
) -> RequestPublic:
    return await service.get_request(_db(request), tracking_code)


@router.get(
    "/procedures",
    response_model=ProcedureList,
    summary="Catalogue des démarches d'une collectivité",
    tags=["démarches"],
    responses=problem_responses(404, 422),
)
async def list_procedures(
    request: Request,
    tenant: Annotated[str, Query(pattern=TENANT_PATTERN, description="Code de la collectivité.")],
) -> ProcedureList:
    return await service.list_procedures(_db(request), tenant)
