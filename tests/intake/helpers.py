"""Building requests and reading back what intake stored, for the intake tests."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from guichet_intake import repository
from guichet_intake.models import receipts
from guichet_intake.schemas import (
    MissingPiecesCreate,
    PiecesReceived,
    RequestCreate,
    RequestPublic,
)
from guichet_intake.seed import PROCEDURE_DEFAULTS
from guichet_intake.service import IntakeService
from guichet_plumbing import tables
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.inbox import idempotent
from guichet_plumbing.observability import ServiceMetrics
from guichet_routing.events import PiecesRequested, StatusChanged, TransferRequested

CAMILLE = {"name": "Camille Martin", "email": "camille.martin@example.org"}


def body(**changes: Any) -> RequestCreate:
    data: dict[str, Any] = {
        "tenant": "admiville",
        "procedure": "reservation-salle",
        "channel": "web",
        "applicant": dict(CAMILLE),
        "payload": {"salle": "Salle des fêtes"},
    }
    data.update(changes)
    return RequestCreate.model_validate(data)


async def submit(intake: IntakeService, now: datetime, **changes: Any) -> dict[str, Any]:
    stored = await intake.submit(body(**changes), None, now=now)
    assert stored.status_code == 201
    created: dict[str, Any] = json.loads(stored.body)
    return created


async def outbox_payloads(db: Database) -> list[bytes]:
    """Every staged event as the outbox stores it, in order."""
    async with db.sessions() as session:
        rows = await session.scalars(
            sa.select(tables.outbox.c.payload).order_by(tables.outbox.c.seq)
        )
        return list(rows)


async def outbox_events(db: Database, event_type: str | None = None) -> list[Envelope]:
    events = [Envelope.from_bytes(raw) for raw in await outbox_payloads(db)]
    return [e for e in events if event_type is None or e.type == event_type]


async def add_tenant(
    db: Database,
    code: str,
    name: str,
    timezone: str,
    territory: str | None = None,
    *,
    procedures: dict[str, dict[str, Any]],
) -> None:
    """A second tenant with one service, `accueil`, and the given procedures."""
    async with db.transaction() as session:
        await repository.upsert_tenant(session, code, name, timezone, territory)
        await repository.upsert_service(
            session,
            {
                "tenant": code,
                "code": "accueil",
                "designation": f"Accueil de {name}",
                "postal_address": f"Mairie, {name}",
                "email": None,
                "phone": "01 99 00 00 99",
            },
        )
        for procedure, fields in procedures.items():
            await repository.upsert_procedure(
                session,
                {
                    **PROCEDURE_DEFAULTS,
                    "tenant": code,
                    "code": procedure,
                    "title": procedure,
                    "service_code": "accueil",
                    **fields,
                },
            )


async def add_neighbour(db: Database) -> None:
    """Voisinville, the neighbouring commune requests are transferred to (R12, R13)."""
    await add_tenant(
        db,
        "voisinville",
        "Commune de Voisinville",
        "Europe/Paris",
        procedures={
            "subvention": {"regime": "svr", "appeal_text": "Recours sous deux mois."},
            "salle": {"regime": "sva"},
        },
    )


async def as_left_by_a_signing_failure(
    db: Database, tracking_code: str, receipt_due_on: date, registration_due_on: date | None
) -> None:
    """The state R23's fallback leaves a request in: stored, no receipt, its due dates set."""
    async with db.transaction() as session:
        row = await repository.get_request_by_code(session, tracking_code)
        await session.execute(sa.delete(receipts).where(receipts.c.request_id == row.id))
        await repository.update_request(
            session,
            row.id,
            {
                "receipt_issued_at": None,
                "receipt_due_on": receipt_due_on,
                "registration_due_on": registration_due_on,
            },
        )


# Routing numbers each request's status changes; here, in the order the tests make them.
_SEQUENCE = itertools.count(1)


def answered_by_workflow(created: dict[str, Any], at: datetime, **changes: Any) -> Envelope:
    """Routing's final status for the request (default: answered), as published."""
    return StatusChanged(
        **{
            "sequence": next(_SEQUENCE),
            "request_id": created["id"],
            "tracking_code": created["tracking_code"],
            "from_status": "recue",
            "status": "repondue",
            "label": "Réponse envoyée",
            "phase": "delivery",
            "final": True,
            "transition": "repondre",
            "actions": ["notify"],
            "changed_at": at,
            **changes,
        }
    ).envelope(tenant=created["tenant"], subject=str(created["id"]))


async def close_by_workflow(
    intake: IntakeService, created: dict[str, Any], at: datetime, **changes: Any
) -> None:
    """Routing's final status for the request, as intake consumes it (default: answered)."""
    consume = idempotent(
        intake.db, "intake.statuses", intake.on_status_changed, ServiceMetrics("t")
    )
    await consume(answered_by_workflow(created, at, **changes))


async def completed_after_pieces(
    intake: IntakeService, code: str, asked: datetime, due_on: date, received: datetime
) -> RequestPublic:
    """Pieces asked at `asked`, due `due_on`, all in at `received` (that day, R11)."""
    await intake.request_pieces(
        code, MissingPiecesCreate(pieces=["Plan de la salle"], due_on=due_on), now=asked
    )
    return await intake.pieces_received(
        code, PiecesReceived(received_on=received.date()), now=received
    )


async def transfer_by_workflow(
    intake: IntakeService,
    created: dict[str, Any],
    at: datetime,
    reason: str = "La salle appartient à Voisinville.",
    **destination: Any,
) -> None:
    """Routing's TransferRequested, to Voisinville unless `destination` says otherwise,
    consumed as in production."""
    request_id = uuid.UUID(created["id"])
    fields = {"tenant": "voisinville", "administration_name": None, "administration_url": None}
    consume = idempotent(
        intake.db, "intake.transfers", intake.on_transfer_requested, ServiceMetrics("t")
    )
    await consume(
        TransferRequested(
            request_id=request_id,
            tracking_code=created["tracking_code"],
            reason=reason,
            requested_at=at,
            **{**fields, **destination},
        ).envelope(tenant="admiville", subject=str(request_id))
    )


async def pieces_asked_by_workflow(
    intake: IntakeService, created: dict[str, Any], at: datetime, pieces: tuple[str, ...] = ()
) -> None:
    """Routing's PiecesRequested (15 days), consumed as in production."""
    request_id = uuid.UUID(created["id"])
    asked = PiecesRequested(
        request_id=request_id,
        tracking_code=created["tracking_code"],
        pieces=list(pieces or ["Attestation d'assurance"]),
        due_in_days=15,
        requested_by="agent-3",
        requested_at=at,
    ).envelope(tenant="admiville", subject=str(request_id))
    await idempotent(intake.db, "intake.pieces", intake.on_pieces_requested, ServiceMetrics("t"))(
        asked
    )


def counted(counter: Any, **labels: str) -> float:
    """What a Prometheus counter has counted for `labels`, as a scrape reads it."""
    return sum(
        sample.value
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
        and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def standing_decisions(intake: IntakeService, outcome: str) -> float:
    """Implicit decisions of `outcome` standing, as operators count them from the metrics:
    those born less those found void."""
    return counted(intake.implicit_decisions, decision=outcome) - counted(
        intake.implicit_decisions_voided, decision=outcome
    )
