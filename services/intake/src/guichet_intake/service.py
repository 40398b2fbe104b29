"""Receiving requests: timestamp, store, acknowledge, publish. One commit point per request."""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_intake import repository
from guichet_intake.deadlines import add_delay
from guichet_intake.events import (
    AcknowledgementData,
    ApplicantContact,
    RequestAssigned,
    RequestReceived,
)
from guichet_intake.schemas import (
    Acknowledgement,
    DelayUnit,
    HistoryEntry,
    ImplicitDecision,
    ProcedureList,
    ProcedurePublic,
    Regime,
    RequestCreate,
    RequestPublic,
    RequestStatus,
    ServiceContact,
    format_delay,
)
from guichet_plumbing import idempotency
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.outbox import stage
from guichet_plumbing.problems import InvalidParam, Problem

log = logging.getLogger(__name__)

STATUS_LABELS = {
    RequestStatus.received: "Demande reçue",
    RequestStatus.assigned: "Transmise au service compétent",
}

# Crockford base32: no I, L, O, U, so a code read over the phone is unambiguous.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = str.maketrans({"O": "0", "I": "1", "L": "1"})
_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def new_tracking_code() -> str:
    """80 random bits, grouped by four: unguessable, easy to dictate."""
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def normalise_tracking_code(value: str) -> str:
    compact = value.upper().replace("-", "").replace(" ", "").translate(_DECODE)
    return "-".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def french_date(value: date) -> str:
    day = "1er" if value.day == 1 else str(value.day)
    return f"{day} {_MONTHS[value.month - 1]} {value.year}"


def _service_contact(row: Any) -> ServiceContact:
    return ServiceContact(
        code=row.service_code,
        designation=row.service_designation,
        postal_address=row.service_postal_address,
        email=row.service_email,
        phone=row.service_phone,
    )


def build_acknowledgement(
    procedure: Any, tracking_code: str, issued_at: datetime, reception_date: date
) -> Acknowledgement | None:
    """The AR with the mentions of R5, or None where R1 exempts the procedure."""
    if not procedure.acknowledgement_required:
        return None
    service = _service_contact(procedure)
    contact = ", ".join(
        p
        for p in (
            service.postal_address,
            f"courriel : {service.email}" if service.email else None,
            f"téléphone : {service.phone}" if service.phone else None,
        )
        if p
    )
    mentions = [
        f"Votre demande a été reçue le {french_date(reception_date)}.",
        f"Service chargé de votre dossier : {service.designation} ({contact}).",
        f"Numéro de suivi : {tracking_code}.",
    ]
    decision = None
    if procedure.kind == "demande":
        regime = Regime(procedure.regime)
        delay = format_delay(procedure.delay_value, DelayUnit(procedure.delay_unit))
        deadline = None
        statement = "Cette demande ne peut pas donner lieu à une décision implicite."
        if regime is not Regime.none:
            deadline = add_delay(reception_date, procedure.delay_value, procedure.delay_unit)
            outcome = "acceptée" if regime is Regime.sva else "rejetée"
            statement = (
                f"Cette demande peut donner lieu à une décision implicite "
                f"d'{'acceptation' if regime is Regime.sva else 'rejet'} : en l'absence de "
                f"réponse de l'administration dans un délai de {delay}, et si votre dossier "
                f"est complet, elle sera réputée {outcome} le {french_date(deadline)} à minuit."
            )
        mentions.append(statement)
        if regime is Regime.sva:
            mentions.append("Vous pourrez alors obtenir une attestation d'acceptation implicite.")
        elif regime is Regime.svr and procedure.appeal_text:
            mentions.append(procedure.appeal_text)
        decision = ImplicitDecision(
            regime=regime,
            delay=delay if deadline else None,
            decision_date=deadline,
            statement=statement,
        )
    return Acknowledgement(
        kind="accuse_reception",
        issued_at=issued_at,
        reception_date=reception_date,
        tracking_code=tracking_code,
        service=service,
        implicit_decision=decision,
        mentions=mentions,
    )


async def submit(
    db: Database, data: RequestCreate, idempotency_key: str | None, now: datetime | None = None
) -> idempotency.StoredResponse:
    """`now` is the server's clock; tests pass a fixed instant."""
    body_print = idempotency.fingerprint(data.model_dump_json().encode())
    try:
        return await _submit_once(db, data, idempotency_key, body_print, now)
    except IntegrityError:
        # A concurrent retry with the same key committed first: replay its answer.
        if idempotency_key is None:
            raise
        async with db.transaction() as session:
            stored = await idempotency.replay(
                session, "intake.requests", idempotency_key, body_print
            )
        if stored is None:
            raise
        return stored


async def _submit_once(
    db: Database,
    data: RequestCreate,
    idempotency_key: str | None,
    body_print: str,
    now: datetime | None,
) -> idempotency.StoredResponse:
    async with db.transaction() as session:
        if idempotency_key is not None:
            stored = await idempotency.replay(
                session, "intake.requests", idempotency_key, body_print
            )
            if stored is not None:
                return stored
        tenant = await repository.get_tenant(session, data.tenant)
        if tenant is None:
            raise Problem(
                404,
                "tenant-unknown",
                "Collectivité inconnue",
                f"La collectivité « {data.tenant} » n'est pas servie par ce guichet. "
                "Vérifiez le code de la collectivité.",
                [InvalidParam(name="tenant", reason="Collectivité inconnue.")],
            )
        procedure = await repository.get_procedure(session, data.tenant, data.procedure)
        if procedure is None:
            raise Problem(
                404,
                "procedure-unknown",
                "Démarche inconnue",
                f"La démarche « {data.procedure} » n'existe pas pour cette "
                "collectivité. La liste des démarches est publiée sur "
                f"/intake/v1/procedures?tenant={data.tenant}.",
                [InvalidParam(name="procedure", reason="Démarche inconnue.")],
            )
        if procedure.location_required and data.location is None:
            raise Problem(
                422,
                "location-required",
                "Lieu manquant",
                "Cette démarche concerne un lieu : indiquez-le (coordonnées ou "
                "adresse) pour que le service puisse intervenir.",
                [InvalidParam(name="location", reason="Ce champ est obligatoire.")],
            )

        # The server's clock, never the client's, fixes the legal date of reception.
        received_at = now or datetime.now(UTC)
        reception_date = received_at.astimezone(ZoneInfo(tenant.timezone)).date()
        request_id = uuid.uuid4()
        tracking_code = new_tracking_code()
        acknowledgement = build_acknowledgement(
            procedure, tracking_code, received_at, reception_date
        )
        await repository.insert_request(
            session,
            {
                "id": request_id,
                "tenant": data.tenant,
                "tracking_code": tracking_code,
                "procedure_code": data.procedure,
                "channel": data.channel.value,
                "applicant": data.applicant.model_dump(mode="json"),
                "contact_preference": data.contact_preference.value,
                "payload": data.payload,
                "location": data.location.model_dump(mode="json") if data.location else None,
                "received_at": received_at,
                "reception_date": reception_date,
                "status": RequestStatus.received.value,
                "acknowledgement": acknowledgement.model_dump(mode="json")
                if acknowledgement
                else None,
            },
        )
        await repository.add_history(
            session,
            request_id,
            received_at,
            RequestStatus.received.value,
            STATUS_LABELS[RequestStatus.received],
        )
        await stage(
            session,
            _received_event(
                data,
                procedure,
                request_id,
                tracking_code,
                received_at,
                reception_date,
                acknowledgement,
            ),
        )
        public = RequestPublic(
            id=request_id,
            tracking_code=tracking_code,
            tenant=data.tenant,
            procedure=data.procedure,
            channel=data.channel,
            status=RequestStatus.received,
            status_label=STATUS_LABELS[RequestStatus.received],
            received_at=received_at,
            reception_date=reception_date,
            assigned_service=None,
            acknowledgement=acknowledgement,
            history=[
                HistoryEntry(
                    at=received_at,
                    status=RequestStatus.received.value,
                    label=STATUS_LABELS[RequestStatus.received],
                )
            ],
        )
        response = idempotency.StoredResponse(201, public.model_dump_json().encode())
        if idempotency_key is not None:
            await idempotency.remember(
                session, "intake.requests", idempotency_key, body_print, response
            )
        return response


def _received_event(
    data: RequestCreate,
    procedure: Any,
    request_id: uuid.UUID,
    tracking_code: str,
    received_at: datetime,
    reception_date: date,
    acknowledgement: Acknowledgement | None,
) -> Envelope:
    address = data.applicant.postal_address
    ack = None
    if acknowledgement is not None:
        decision = acknowledgement.implicit_decision
        ack = AcknowledgementData(
            kind=acknowledgement.kind,
            reception_date=acknowledgement.reception_date,
            service_designation=acknowledgement.service.designation,
            service_postal_address=acknowledgement.service.postal_address,
            service_email=acknowledgement.service.email,
            service_phone=acknowledgement.service.phone,
            regime=decision.regime.value if decision else Regime.none.value,
            implicit_decision_date=decision.decision_date if decision else None,
            mentions=acknowledgement.mentions,
        )
    event = RequestReceived(
        request_id=request_id,
        tracking_code=tracking_code,
        procedure_code=data.procedure,
        procedure_title=procedure.title,
        channel=data.channel.value,
        received_at=received_at,
        reception_date=reception_date,
        applicant=ApplicantContact(
            name=data.applicant.name,
            email=str(data.applicant.email) if data.applicant.email else None,
            phone=data.applicant.phone,
            postal_address=address.one_line() if address else None,
        ),
        contact_preference=data.contact_preference.value,
        payload=data.payload,
        location=data.location.model_dump(mode="json") if data.location else None,
        acknowledgement=ack,
    )
    return event.envelope(tenant=data.tenant, subject=str(request_id), occurred_at=received_at)


async def get_request(db: Database, tracking_code: str) -> RequestPublic:
    async with db.sessions() as session:
        row = await repository.get_request_by_code(session, normalise_tracking_code(tracking_code))
        if row is None:
            raise Problem(
                404,
                "request-unknown",
                "Demande introuvable",
                "Aucune demande ne correspond à ce numéro de suivi. Vérifiez-le "
                "(il figure sur votre accusé de réception).",
            )
        entries = await repository.history(session, row.id)
    status = RequestStatus(row.status)
    label = STATUS_LABELS[status]
    if status is RequestStatus.assigned and row.assigned_service_name:
        label = f"Transmise au service : {row.assigned_service_name}"
    return RequestPublic(
        id=row.id,
        tracking_code=row.tracking_code,
        tenant=row.tenant,
        procedure=row.procedure_code,
        channel=row.channel,
        status=status,
        status_label=label,
        received_at=row.received_at,
        reception_date=row.reception_date,
        assigned_service=row.assigned_service_name,
        acknowledgement=Acknowledgement.model_validate(row.acknowledgement)
        if row.acknowledgement
        else None,
        history=[HistoryEntry(at=e.at, status=e.status, label=e.label) for e in entries],
    )


async def list_procedures(db: Database, tenant: str) -> ProcedureList:
    async with db.sessions() as session:
        if not await repository.tenant_exists(session, tenant):
            raise Problem(
                404,
                "tenant-unknown",
                "Collectivité inconnue",
                f"La collectivité « {tenant} » n'est pas servie par ce guichet.",
                [InvalidParam(name="tenant", reason="Collectivité inconnue.")],
            )
        rows = await repository.list_procedures(session, tenant)
    return ProcedureList(
        tenant=tenant,
        items=[
            ProcedurePublic(
                code=r.code,
                title=r.title,
                kind=r.kind,
                regime=r.regime,
                delay=format_delay(r.delay_value, DelayUnit(r.delay_unit)),
                acknowledgement_required=r.acknowledgement_required,
                location_required=r.location_required,
                service=_service_contact(r),
            )
            for r in rows
        ],
    )


async def on_request_assigned(session: AsyncSession, envelope: Envelope) -> None:
    """Routing chose the competent service: the applicant sees it when following the request."""
    event = RequestAssigned.model_validate(envelope.data)
    if await repository.get_request(session, event.request_id) is None:
        # Not ours (another environment's event): retrying would block the partition.
        log.warning("assignment for unknown request %s ignored", event.request_id)
        return
    await repository.set_assignment(
        session,
        event.request_id,
        event.service_code,
        event.service_name,
        RequestStatus.assigned.value,
    )
    await repository.add_history(
        session,
        event.request_id,
        event.assigned_at,
        RequestStatus.assigned.value,
        f"Transmise au service : {event.service_name}",
    )
