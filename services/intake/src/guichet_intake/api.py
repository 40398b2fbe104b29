"""Intake's HTTP routes."""

from __future__ import annotations

import asyncio
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Cookie, Form, Header, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse

from guichet_intake.documents import (
    render_html,
    render_pdf,
    render_text,
    render_verification,
)
from guichet_intake.identity import LOGIN_MINUTES, Identity
from guichet_intake.schemas import (
    CODE_PATTERN,
    TENANT_PATTERN,
    TRACKING_CODE_PATTERN,
    AgentAccountWrite,
    ClientCreate,
    ClientCredentials,
    MandateCreate,
    MandatePublic,
    Me,
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
    TokenAnswer,
    TransferCreate,
    TransferReceived,
    VerifyRequest,
    VerifyResult,
)
from guichet_intake.service import FollowProof, IntakeService
from guichet_plumbing import idempotency, lane
from guichet_plumbing.auth import (
    PUBLIC,
    CurrentCitizen,
    CurrentPrincipal,
    Principal,
    Role,
    allow,
    open_policy,
)
from guichet_plumbing.jsonbody import JsonRoute
from guichet_plumbing.problems import Problem, problem_responses

router = APIRouter(route_class=JsonRoute)

# Who may call each route; which file, which citizen, is checked in the service (R21).
SUBMIT = allow(
    "submit",
    anonymous=True,
    roles=[Role.counter_agent, Role.mediator],
    scopes=["transfers:write"],
)
FOLLOW = allow(
    "follow",
    anonymous=True,
    roles=[Role.counter_agent, Role.case_handler, Role.service_head, Role.mediator],
)
QUALIFY = allow("qualify", roles=[Role.counter_agent, Role.case_handler, Role.service_head])
INSTRUCT = allow("instruct", roles=[Role.case_handler, Role.service_head])
RECEPTION = allow("reception", roles=[Role.counter_agent, Role.service_head, Role.administrator])
ADMINISTER = allow("administer", roles=[Role.administrator])
CITIZEN = allow("citizen", citizens=True)
_SUBMIT_POLICY = open_policy(SUBMIT)
_TRACKING_CODE = re.compile(rb'"tracking_code":"([0-9A-Z-]+)"')

FollowFactor = Annotated[
    str | None,
    Header(
        alias="X-Follow-Proof",
        max_length=254,
        description="Sans compte : l'adresse électronique ou le téléphone donné au dépôt.",
    ),
]
FollowLink = Annotated[
    str | None,
    Query(alias="access", max_length=2000, description="Jeton du lien de suivi reçu au dépôt."),
]

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


def _identity(request: Request) -> Identity:
    identity: Identity = request.app.state.identity
    return identity


# -- requests ----------------------------------------------------------------------------------


@router.post(
    "/v1/requests",
    dependencies=[SUBMIT],
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
    principal: CurrentPrincipal,
    body: RequestCreate,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="Clé choisie par le client, propre à chaque appelant : la même clé "
            "renvoyée avec le même corps rejoue la réponse enregistrée.",
        ),
    ] = None,
) -> Response:
    return await _submit(request, principal, body, idempotency_key)


async def create_request_lane(request: Request) -> Response:
    """`create_request` as a lane: every submission comes this way (`guichet_plumbing.lane`)."""
    data = await lane.read_json(request)  # malformed JSON is refused first, as FastAPI does
    principal = await _SUBMIT_POLICY(request)
    params = lane.Params()
    idempotency_key = params.header(request, "Idempotency-Key", max_length=255)
    body = params.body(RequestCreate, data)
    params.check()
    assert body is not None
    return await _submit(request, principal, body, idempotency_key)


async def _submit(
    request: Request, principal: Principal, body: RequestCreate, idempotency_key: str | None
) -> Response:
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    stored = await _intake(request).submit(body, key, principal=principal)
    # Our own serialisation (or its replay), `tracking_code` second: found, not parsed.
    found = _TRACKING_CODE.search(stored.body, 0, 256)
    assert found is not None
    tracking_code = found.group(1).decode()
    location = f"{request.scope.get('root_path', '')}/v1/requests/{tracking_code}"
    return Response(
        stored.body,
        status_code=stored.status_code,
        media_type="application/json",
        headers={"Location": location},
    )


@router.get(
    "/v1/requests/{tracking_code}",
    dependencies=[FOLLOW],
    response_model=RequestPublic,
    summary="Suivre une demande par son numéro de suivi",
    tags=["demandes"],
    responses=problem_responses(404, 422),
)
async def get_request(
    request: Request,
    principal: CurrentPrincipal,
    tracking_code: TrackingCode,
    factor: FollowFactor = None,
    link: FollowLink = None,
) -> RequestPublic:
    proof = FollowProof(factor=factor, link=link)
    return await _intake(request).get_request(tracking_code, principal, proof)


@router.post(
    "/v1/requests/{tracking_code}/qualification",
    dependencies=[QUALIFY],
    response_model=RequestPublic,
    summary="Qualifier une demande arrivée sans démarche : l'accusé de réception suit",
    tags=["instruction"],
    responses=problem_responses(404, 409, 422),
)
async def qualify_request(
    request: Request, principal: CurrentPrincipal, tracking_code: TrackingCode, body: Qualification
) -> RequestPublic:
    return await _intake(request).qualify(tracking_code, body.procedure, principal=principal)


@router.post(
    "/v1/requests/{tracking_code}/missing-pieces",
    dependencies=[INSTRUCT],
    response_model=RequestPublic,
    summary="Demander des pièces manquantes (dossier incomplet)",
    description="L'usager est informé des pièces, de la date limite et de l'effet sur "
    "le délai : en SVA il ne court qu'à leur réception, en SVR il est suspendu.",
    tags=["instruction"],
    responses=problem_responses(404, 409, 422),
)
async def request_missing_pieces(
    request: Request,
    principal: CurrentPrincipal,
    tracking_code: TrackingCode,
    body: MissingPiecesCreate,
) -> RequestPublic:
    return await _intake(request).request_pieces(tracking_code, body, principal=principal)


@router.post(
    "/v1/requests/{tracking_code}/pieces-received",
    dependencies=[INSTRUCT],
    response_model=RequestPublic,
    summary="Enregistrer la réception des pièces demandées",
    tags=["instruction"],
    responses=problem_responses(404, 409, 422),
)
async def record_pieces_received(
    request: Request, principal: CurrentPrincipal, tracking_code: TrackingCode, body: PiecesReceived
) -> RequestPublic:
    return await _intake(request).pieces_received(tracking_code, body, principal=principal)


@router.post(
    "/v1/requests/{tracking_code}/transfer",
    dependencies=[INSTRUCT],
    response_model=RequestPublic,
    summary="Transmettre à l'administration compétente (l'usager en est avisé)",
    tags=["instruction"],
    responses=problem_responses(404, 409, 422, 502),
)
async def transfer_request(
    request: Request, principal: CurrentPrincipal, tracking_code: TrackingCode, body: TransferCreate
) -> RequestPublic:
    return await _intake(request).transfer(tracking_code, body, principal=principal)


@router.post(
    "/v1/transfers/{tenant}",
    dependencies=[PUBLIC],
    status_code=201,
    response_model=TransferReceived,
    summary="Recevoir une demande transmise par une autre administration (jeton signé)",
    description="Le corps est la transmission signée (JWS compact, `application/jose`) telle "
    "qu'un autre Guichet l'envoie : elle n'est reçue que signée par une administration "
    "déclarée (`GUICHET_INTAKE_TRANSFER_SENDERS`) et pour cette adresse. La demande est reçue "
    "aujourd'hui par la collectivité compétente, sa date de première réception conservée "
    "(R13). Une même transmission envoyée de nouveau renvoie la même réponse, sans second "
    "dossier.",
    tags=["instruction"],
    responses=problem_responses(400, 403, 404, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/jose": {"schema": {"type": "string"}}},
        }
    },
)
async def receive_transfer(
    request: Request,
    tenant: Annotated[str, Path(pattern=TENANT_PATTERN, description="Collectivité destinataire.")],
) -> Response:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/jose":
        raise Problem(
            415,
            "transfer-media-type",
            "Type de contenu non pris en charge",
            "Une transmission est envoyée comme jeton signé, de type application/jose.",
        )
    try:
        token = (await request.body()).decode("ascii")
    except UnicodeDecodeError:
        token = ""  # not a JWS: answered as any unsigned body
    stored = await _intake(request).receive_transfer(tenant, token)
    return Response(stored.body, status_code=stored.status_code, media_type="application/json")


@router.post(
    "/v1/requests/{tracking_code}/attestation",
    dependencies=[FOLLOW],
    status_code=201,
    summary="Obtenir l'attestation d'acceptation implicite (SVA)",
    tags=["demandes"],
    responses=problem_responses(404, 409, 422),
)
async def create_attestation(
    request: Request,
    principal: CurrentPrincipal,
    tracking_code: TrackingCode,
    factor: FollowFactor = None,
    link: FollowLink = None,
) -> dict[str, str]:
    proof = FollowProof(factor=factor, link=link)
    receipt_id = await _intake(request).attestation(tracking_code, principal=principal, proof=proof)
    root = request.scope.get("root_path", "")
    return {"receipt_id": str(receipt_id), "pdf": f"{root}/v1/receipts/{receipt_id}.pdf"}


# -- receipts ----------------------------------------------------------------------------------


# A long receipt takes ReportLab a tenth of a second or more: rendered on the event loop,
# a few anonymous downloads would hold every other request. On a thread of its own, one at
# a time (ReportLab's module-level state is not meant for threads): downloads waiting
# queue there, not on the threads name lookups and other work share.
_PDF_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdf")


@router.get(
    "/v1/receipts/{receipt_id:uuid}.pdf",
    dependencies=[PUBLIC],
    summary="Accusé ou attestation en PDF",
    tags=["accusés"],
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}, **problem_responses(404, 422)},
)
async def get_receipt_pdf(request: Request, receipt_id: uuid.UUID) -> Response:
    document, token = await _intake(request).receipt(receipt_id)
    filename = f"{document.kind}-{document.tracking_code}.pdf"
    return Response(
        await asyncio.get_running_loop().run_in_executor(_PDF_THREAD, render_pdf, document, token),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{filename}"'},
    )


@router.get(
    "/v1/receipts/{receipt_id:uuid}",
    dependencies=[PUBLIC],
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
    dependencies=[PUBLIC],
    response_model=VerifyResult,
    summary="Vérifier l'authenticité d'un accusé présenté",
    tags=["accusés"],
    responses=problem_responses(422),
)
async def verify_receipt(request: Request, body: VerifyRequest) -> VerifyResult:
    return await _intake(request).verify(body.token)


@router.get(
    "/v1/receipts/verify",
    dependencies=[PUBLIC],
    summary="Page de vérification d'un accusé (l'adresse imprimée sur chaque accusé)",
    tags=["accusés"],
    response_class=HTMLResponse,
    responses=problem_responses(422),
)
async def verify_receipt_page(
    request: Request,
    token: Annotated[
        str | None,
        # A JWS, maybe with the line breaks of a copy: within a request's 64 KiB head
        # even percent-encoded (a receipt's is 2 to 15 kB; longer: POST, in JSON).
        Query(
            max_length=20_000,
            pattern=r"^[A-Za-z0-9._\-\s]*$",
            description="Jeton JWS à vérifier, tel qu'imprimé.",
        ),
    ] = None,
) -> HTMLResponse:
    if token is None or not token.strip():
        return HTMLResponse(render_verification("", None, None, None))
    result = await _intake(request).verify(token)
    return HTMLResponse(
        render_verification(token, result.authentic, result.receipt, result.void),
        # What a receipt says is no one else's business: not kept by a shared cache.
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/.well-known/jwks.json",
    dependencies=[PUBLIC],
    summary="Clés publiques de signature des accusés",
    tags=["accusés"],
)
async def get_jwks(request: Request) -> dict[str, Any]:
    return await _intake(request).jwks()


@router.get(
    "/v1/receipts-overdue",
    dependencies=[RECEPTION],
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
    dependencies=[PUBLIC],
    response_model=ProcedureList,
    summary="Catalogue des démarches d'une collectivité",
    tags=["démarches"],
    responses=problem_responses(404, 422),
)
async def list_procedures(request: Request, tenant: Tenant) -> ProcedureList:
    return await _intake(request).list_procedures(tenant)


@router.get(
    "/v1/procedures/sva",
    dependencies=[PUBLIC],
    response_model=SvaList,
    summary="Liste publique des démarches où le silence vaut acceptation (R10)",
    tags=["démarches"],
    responses=problem_responses(404, 422),
)
async def list_sva_procedures(request: Request, tenant: Tenant) -> SvaList:
    return await _intake(request).sva_procedures(tenant)


@router.put(
    "/v1/procedures/{code}",
    dependencies=[ADMINISTER],
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
    dependencies=[ADMINISTER],
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
    dependencies=[ADMINISTER],
    summary="Renouveler la clé de signature des accusés",
    tags=["accusés"],
    responses=problem_responses(404, 422),
)
async def rotate_signing_key(request: Request, tenant: Tenant) -> dict[str, str]:
    return {"kid": await _intake(request).rotate_key(tenant)}


# -- abusive sources (R9) ----------------------------------------------------------------------


@router.get(
    "/v1/sources",
    dependencies=[ADMINISTER],
    response_model=SourceList,
    summary="Sources d'envois signalés comme abusifs",
    tags=["envois abusifs"],
    responses=problem_responses(404, 422),
)
async def list_sources(request: Request, tenant: Tenant) -> SourceList:
    return await _intake(request).sources(tenant)


@router.post(
    "/v1/sources/{source}/notice",
    dependencies=[ADMINISTER],
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
    dependencies=[ADMINISTER],
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
    dependencies=[ADMINISTER],
    status_code=204,
    response_class=Response,
    summary="Débloquer une source",
    tags=["envois abusifs"],
    responses=problem_responses(404, 422),
)
async def unblock_source(request: Request, source: SourceKey, tenant: Tenant) -> Response:
    await _intake(request).unblock_source(tenant, source)
    return Response(status_code=204)


# -- identity and access -----------------------------------------------------------------------

Provider = Annotated[
    Literal["agents", "franceconnect"],
    Path(description="agents : fournisseur d'identité de la collectivité ; franceconnect."),
]
LOGIN_COOKIE = "guichet_login"


@router.get(
    "/v1/auth/jwks.json",
    dependencies=[PUBLIC],
    summary="Clés publiques des jetons Guichet (vérification par tout service)",
    tags=["identité"],
)
async def get_token_jwks(request: Request) -> dict[str, Any]:
    return _identity(request).keys.public_jwks()


@router.post(
    "/v1/auth/demo/{login}",
    dependencies=[PUBLIC],
    response_model=TokenAnswer,
    summary="Connexion de démonstration, sans mot de passe (développement seulement)",
    description="Connexions : accueil, instructeur-accueil, instructeur-voirie, chef-voirie, "
    "admin, dpo, mediatrice, usager, systeme. Refusées quand GUICHET_ENV=production.",
    tags=["identité"],
    responses=problem_responses(404, 422),
)
async def demo_login(
    request: Request,
    login: Annotated[str, Path(pattern=CODE_PATTERN, description="Nom de la connexion.")],
) -> TokenAnswer:
    return _identity(request).demo(login)


@router.post(
    "/v1/auth/token",
    dependencies=[PUBLIC],
    response_model=TokenAnswer,
    summary="Jeton d'un système d'une autre administration (OAuth 2, client credentials)",
    description="Corps application/x-www-form-urlencoded (RFC 6749) : grant_type="
    "client_credentials, client_id, client_secret, scope (facultatif).",
    tags=["identité"],
    responses=problem_responses(400, 401, 422),
)
async def client_token(
    request: Request,
    grant_type: Annotated[Literal["client_credentials"], Form()],
    client_id: Annotated[str, Form(min_length=3, max_length=64)],
    client_secret: Annotated[str, Form(min_length=8, max_length=200)],
    scope: Annotated[str | None, Form(max_length=200)] = None,
) -> TokenAnswer:
    return await _identity(request).client_token(client_id, client_secret, scope)


@router.get(
    "/v1/auth/{provider}/login",
    dependencies=[PUBLIC],
    status_code=302,
    response_class=RedirectResponse,
    summary="Se connecter : redirection vers le fournisseur d'identité",
    tags=["identité"],
    responses=problem_responses(404, 422, 502),
)
async def login(
    request: Request,
    provider: Provider,
    tenant: Annotated[
        str | None,
        Query(pattern=TENANT_PATTERN, description="Agents : code de leur collectivité."),
    ] = None,
) -> RedirectResponse:
    url, sealed = await _identity(request).start_login(provider, tenant)
    answer = RedirectResponse(url, status_code=302)
    answer.set_cookie(
        LOGIN_COOKIE,
        sealed,
        max_age=LOGIN_MINUTES * 60,
        httponly=True,
        samesite="lax",
        secure=request.app.state.runtime.settings.env == "production",
    )
    return answer


@router.get(
    "/v1/auth/{provider}/callback",
    dependencies=[PUBLIC],
    response_model=TokenAnswer,
    summary="Retour du fournisseur d'identité : le jeton Guichet",
    tags=["identité"],
    responses=problem_responses(401, 403, 404, 422, 502),
)
async def login_callback(
    request: Request,
    provider: Provider,
    code: Annotated[str, Query(min_length=1, max_length=2000)],
    state: Annotated[str, Query(min_length=1, max_length=200)],
    sealed: Annotated[str | None, Cookie(alias=LOGIN_COOKIE, max_length=4000)] = None,
) -> Response:
    token = await _identity(request).finish_login(provider, code, state, sealed)
    answer = JSONResponse(token.model_dump(exclude_none=True))
    answer.delete_cookie(LOGIN_COOKIE)
    return answer


@router.get(
    "/v1/auth/franceconnect/logout",
    dependencies=[PUBLIC],
    status_code=302,
    response_class=RedirectResponse,
    summary="Se déconnecter, y compris de FranceConnect",
    tags=["identité"],
    responses=problem_responses(404, 422, 502),
)
async def franceconnect_logout(
    request: Request,
    id_token_hint: Annotated[str, Query(min_length=10, max_length=4000)],
) -> RedirectResponse:
    return RedirectResponse(await _identity(request).logout_url(id_token_hint), status_code=302)


@router.get(
    "/v1/me",
    dependencies=[CITIZEN],
    response_model=Me,
    summary="Mon identité FranceConnect, et le demandeur qu'elle préremplit (R14)",
    tags=["identité"],
)
async def get_me(citizen: CurrentCitizen) -> Me:
    return Identity.me(citizen)


@router.put(
    "/v1/agents/{subject}",
    dependencies=[ADMINISTER],
    status_code=204,
    response_class=Response,
    summary="Habiliter un agent : rôles et services (R21)",
    tags=["identité"],
    responses=problem_responses(404, 422),
)
async def put_agent(
    request: Request,
    tenant: Tenant,
    body: AgentAccountWrite,
    subject: Annotated[
        str, Path(min_length=1, max_length=200, description="Identifiant (sub) de l'agent.")
    ],
) -> Response:
    await _identity(request).put_agent(tenant, subject, body)
    return Response(status_code=204)


@router.post(
    "/v1/clients",
    dependencies=[ADMINISTER],
    status_code=201,
    response_model=ClientCredentials,
    summary="Déclarer le système d'une autre administration (secret montré une fois)",
    tags=["identité"],
    responses=problem_responses(404, 422),
)
async def create_client(request: Request, tenant: Tenant, body: ClientCreate) -> ClientCredentials:
    return await _identity(request).create_client(tenant, body)


@router.post(
    "/v1/clients/{client_id}/secret",
    dependencies=[ADMINISTER],
    response_model=ClientCredentials,
    summary="Renouveler le secret d'un client (l'ancien vaut encore le temps de la bascule)",
    tags=["identité"],
    responses=problem_responses(404, 422),
)
async def rotate_client_secret(
    request: Request,
    tenant: Tenant,
    client_id: Annotated[str, Path(min_length=3, max_length=64)],
) -> ClientCredentials:
    return await _identity(request).rotate_client_secret(tenant, client_id)


@router.post(
    "/v1/mandates",
    dependencies=[CITIZEN],
    status_code=201,
    response_model=MandatePublic,
    summary="Donner mandat à un aidant ou à son représentant légal (R25)",
    description="Le titulaire agit ensuite pour l'usager en joignant l'en-tête X-Mandate "
    "(identifiant du mandat) : il suit et dépose ses demandes ; chaque accès est tracé au "
    "nom des deux.",
    tags=["identité"],
    responses=problem_responses(404, 422),
)
async def grant_mandate(
    request: Request, citizen: CurrentCitizen, body: MandateCreate
) -> MandatePublic:
    return await _identity(request).grant_mandate(citizen, body)


@router.delete(
    "/v1/mandates/{mandate_id}",
    dependencies=[CITIZEN],
    status_code=204,
    response_class=Response,
    summary="Retirer un mandat",
    tags=["identité"],
    responses=problem_responses(404, 422),
)
async def revoke_mandate(
    request: Request, citizen: CurrentCitizen, mandate_id: uuid.UUID
) -> Response:
    await _identity(request).revoke_mandate(citizen, mandate_id)
    return Response(status_code=204)


# Routes served as lanes (`guichet_plumbing.lane`): the hot path of a city's traffic.
LANES = [lane.Lane("POST", "/v1/requests", create_request_lane)]
