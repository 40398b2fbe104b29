"""Intake's HTTP routes."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from guichet_intake.documents import render_html, render_pdf, render_text
from guichet_intake.schemas import (
    CODE_PATTERN,
    TENANT_PATTERN,
    TRACKING_CODE_PATTERN,
    MissingPiecesCreate,
    OverdueList,
    PiecesReceived,
    ProcedureList,
    ProcedurePublic,
    ProcedureWrite,
    Qualification,
    RequestCreate,
    RequestCreated,
    RequestPublic,
    ServiceWrite,
    SourceAction,
    SourceList,
    SvaList,
    TransferCreate,
    VerifyRequest,
    VerifyResult,
)
from guichet_intake.service import IntakeService
from guichet_plumbing import idempotency
from guichet_plumbing.problems import problem_responses

router = APIRouter()

Tenant = Annotated[str, Query(pattern=TENANT_PATTERN, description="Code de la collectivité.")]
TrackingCode = Annotated[
    str,
    Path(pattern=TRACKING_CODE_PATTERN, description="Numéro de suivi (ex. 7KQ2-9XWM-PT4R-H3VD)."),
]
Code = Annotated[str, Path(pattern=CODE_PATTERN, description="Code (minuscules, tirets).")]
SourceKey = Annotated[
    str,
    Path(min_length=3, max_length=254, description="Source telle que listée (ex. email:x@y.fr)."),
]


def _intake(request: Request) -> IntakeService:
    intake: IntakeService = request.app.state.intake
    return intake


# -- requests ----------------------------------------------------------------------------------


@router.post(
    "/v1/requests",
    status_code=201,
    response_model=RequestCreated,
    summary="Déposer une demande (tous canaux, y compris saisie pour le compte d'un usager)",
    description="Horodate la demande, la conserve, et renvoie l'accusé de réception signé avec "
    "ses mentions légales (ou un accusé d'enregistrement si la démarche n'est pas encore "
    "connue). Rejouer la même requête avec le même en-tête `Idempotency-Key` renvoie la même "
    "réponse sans créer de doublon.",
    tags=["demandes"],
    responses=problem_responses(400, 403, 404, 409, 413, 422),
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
    stored = await _intake(request).submit(body, key)
    # Built from the validated model (or replayed as stored): read it, do not re-validate it.
    tracking_code = json.loads(stored.body)["tracking_code"]
    location = f"{request.scope.get('root_path', '')}/v1/requests/{tracking_code}"
    return Response(
        stored.body,
        status_code=stored.status_code,
        media_type="application/json",
        headers={"Location": location},
    )


@router.get(
    "/v1/requests/{tracking_code}",
    response_model=RequestPublic,
    summary="Suivre une demande par son numéro de suivi",
    tags=["demandes"],
    responses=problem_responses(404, 422),
)
async def get_request(request: Request, tracking_code: TrackingCode) -> RequestPublic:
    return await _intake(request).get_request(tracking_code)


@router.post(
    "/v1/requests/{tracking_code}/qualification",
    response_model=RequestPublic,
    summary="Qualifier une demande arrivée sans démarche : l'accusé de réception suit",
    tags=["instruction"],
    responses=problem_responses(404, 409, 422),
)
async def qualify_request(
    request: Request, tracking_code: TrackingCode, body: Qualification
) -> RequestPublic:
    return await _intake(request).qualify(tracking_code, body.procedure)


@router.post(
    "/v1/requests/{tracking_code}/missing-pieces",
    response_model=RequestPublic,
    summary="Demander des pièces manquantes (dossier incomplet)",
    description="L'usager est informé des pièces, de la date limite et de l'effet sur "
    "le délai : en SVA il ne court qu'à leur réception, en SVR il est suspendu.",
    tags=["instruction"],
    responses=problem_responses(404, 409, 422),
)
async def request_missing_pieces(
    request: Request, tracking_code: TrackingCode, body: MissingPiecesCreate
) -> RequestPublic:
    return await _intake(request).request_pieces(tracking_code, body)


@router.post(
    "/v1/requests/{tracking_code}/pieces-received",
    response_model=RequestPublic,
    summary="Enregistrer la réception des pièces demandées",
    tags=["instruction"],
    responses=problem_responses(404, 409, 422),
)
async def record_pieces_received(
    request: Request, tracking_code: TrackingCode, body: PiecesReceived
) -> RequestPublic:
    return await _intake(request).pieces_received(tracking_code, body)


@router.post(
    "/v1/requests/{tracking_code}/transfer",
    response_model=RequestPublic,
    summary="Transmettre à l'administration compétente (l'usager en est avisé)",
    tags=["instruction"],
    responses=problem_responses(404, 409, 422, 502),
)
async def transfer_request(
    request: Request, tracking_code: TrackingCode, body: TransferCreate
) -> RequestPublic:
    return await _intake(request).transfer(tracking_code, body)


@router.post(
    "/v1/requests/{tracking_code}/attestation",
    status_code=201,
    summary="Obtenir l'attestation d'acceptation implicite (SVA)",
    tags=["demandes"],
    responses=problem_responses(404, 409, 422),
)
async def create_attestation(request: Request, tracking_code: TrackingCode) -> dict[str, str]:
    receipt_id = await _intake(request).attestation(tracking_code)
    root = request.scope.get("root_path", "")
    return {"receipt_id": str(receipt_id), "pdf": f"{root}/v1/receipts/{receipt_id}.pdf"}


# -- receipts ----------------------------------------------------------------------------------


@router.get(
    "/v1/receipts/{receipt_id:uuid}.pdf",
    summary="Accusé ou attestation en PDF",
    tags=["accusés"],
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}, **problem_responses(404, 422)},
)
async def get_receipt_pdf(request: Request, receipt_id: uuid.UUID) -> Response:
    document, token = await _intake(request).receipt(receipt_id)
    filename = f"{document.kind}-{document.tracking_code}.pdf"
    return Response(
        render_pdf(document, token),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{filename}"'},
    )


@router.get(
    "/v1/receipts/{receipt_id:uuid}",
    summary="Accusé signé (JSON, HTML ou texte selon Accept)",
    tags=["accusés"],
    responses={
        200: {"content": {"application/json": {}, "text/html": {}, "text/plain": {}}},
        **problem_responses(404, 422),
    },
)
async def get_receipt(request: Request, receipt_id: uuid.UUID) -> Response:
    document, token = await _intake(request).receipt(receipt_id)
    accept = request.headers.get("accept", "")
    if "text/html" in accept:
        return HTMLResponse(render_html(document, token))
    if "text/plain" in accept:
        return PlainTextResponse(render_text(document) + f"\n\nJeton signé :\n{token}\n")
    return JSONResponse({"document": document.model_dump(mode="json"), "token": token})


@router.post(
    "/v1/receipts/verify",
    response_model=VerifyResult,
    summary="Vérifier l'authenticité d'un accusé présenté",
    tags=["accusés"],
    responses=problem_responses(422),
)
async def verify_receipt(request: Request, body: VerifyRequest) -> VerifyResult:
    return await _intake(request).verify(body.token)


@router.get(
    "/.well-known/jwks.json", summary="Clés publiques de signature des accusés", tags=["accusés"]
)
async def get_jwks(request: Request) -> dict[str, Any]:
    return await _intake(request).jwks()


@router.get(
    "/v1/receipts-overdue",
    response_model=OverdueList,
    summary="Demandes dont l'accusé de réception est en retard (R3, R4)",
    tags=["instruction"],
    responses=problem_responses(404, 422),
)
async def list_overdue_receipts(request: Request, tenant: Tenant) -> OverdueList:
    return await _intake(request).overdue(tenant)


# -- catalogue ---------------------------------------------------------------------------------


@router.get(
    "/v1/procedures",
    response_model=ProcedureList,
    summary="Catalogue des démarches d'une collectivité",
    tags=["démarches"],
    responses=problem_responses(404, 422),
)
async def list_procedures(request: Request, tenant: Tenant) -> ProcedureList:
    return await _intake(request).list_procedures(tenant)


@router.get(
    "/v1/procedures/sva",
    response_model=SvaList,
    summary="Liste publique des démarches où le silence vaut acceptation (R10)",
    tags=["démarches"],
    responses=problem_responses(404, 422),
)
async def list_sva_procedures(request: Request, tenant: Tenant) -> SvaList:
    return await _intake(request).sva_procedures(tenant)


@router.put(
    "/v1/procedures/{code}",
    response_model=ProcedurePublic,
    summary="Créer ou remplacer une démarche du catalogue",
    tags=["démarches"],
    responses={
        201: {"model": ProcedurePublic, "description": "Démarche créée"},
        **problem_responses(404, 422),
    },
)
async def put_procedure(
    request: Request, response: Response, code: Code, tenant: Tenant, body: ProcedureWrite
) -> ProcedurePublic:
    procedure, created = await _intake(request).put_procedure(tenant, code, body)
    response.status_code = 201 if created else 200
    return procedure


@router.put(
    "/v1/services/{code}",
    status_code=204,
    response_class=Response,
    summary="Créer ou modifier un service compétent (coordonnées des accusés)",
    tags=["démarches"],
    responses=problem_responses(404, 422),
)
async def put_service(request: Request, code: Code, tenant: Tenant, body: ServiceWrite) -> Response:
    await _intake(request).put_service(tenant, code, body)
    return Response(status_code=204)


@router.post(
    "/v1/signing-keys/rotate",
    summary="Renouveler la clé de signature des accusés",
    tags=["accusés"],
    responses=problem_responses(404, 422),
)
async def rotate_signing_key(request: Request, tenant: Tenant) -> dict[str, str]:
    return {"kid": await _intake(request).rotate_key(tenant)}


# -- abusive sources (R9) ----------------------------------------------------------------------


@router.get(
    "/v1/sources",
    response_model=SourceList,
    summary="Sources d'envois signalés comme abusifs",
    tags=["envois abusifs"],
    responses=problem_responses(404, 422),
)
async def list_sources(request: Request, tenant: Tenant) -> SourceList:
    return await _intake(request).sources(tenant)


@router.post(
    "/v1/sources/{source}/notice",
    status_code=204,
    response_class=Response,
    summary="Enregistrer que la source a été informée du caractère abusif",
    tags=["envois abusifs"],
    responses=problem_responses(404, 422),
)
async def notice_source(
    request: Request, source: SourceKey, tenant: Tenant, body: SourceAction
) -> Response:
    await _intake(request).notice_source(tenant, source, body.reason)
    return Response(status_code=204)


@router.post(
    "/v1/sources/{source}/block",
    status_code=204,
    response_class=Response,
    summary="Bloquer une source déjà informée",
    tags=["envois abusifs"],
    responses=problem_responses(404, 409, 422),
)
async def block_source(
    request: Request, source: SourceKey, tenant: Tenant, body: SourceAction
) -> Response:
    await _intake(request).block_source(tenant, source, body.reason)
    return Response(status_code=204)


@router.delete(
    "/v1/sources/{source}/block",
    status_code=204,
    response_class=Response,
    summary="Débloquer une source",
    tags=["envois abusifs"],
    responses=problem_responses(404, 422),
)
async def unblock_source(request: Request, source: SourceKey, tenant: Tenant) -> Response:
    await _intake(request).unblock_source(tenant, source)
    return Response(status_code=204)
