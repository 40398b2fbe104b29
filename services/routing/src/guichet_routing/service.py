"""Dispatching requests to the competent service, and the agents' inbox."""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.outbox import stage
from guichet_plumbing.problems import InvalidParam, Problem, unknown_tenant
from guichet_routing import repository
from guichet_routing.events import RequestAssigned, RequestReceived
from guichet_routing.schemas import (
    Inbox,
    InboxItem,
    RoutingTable,
    RulePublic,
    ServicePublic,
)

log = logging.getLogger(__name__)

STATUS_LABELS = {"assigned": "Transmise au service compétent"}


def choose_service(rules: Any, default_service: str, procedure: str | None) -> tuple[str, str]:
    """First matching rule in order, else the tenant's default service; says which applied."""
    for rule in rules:
        if rule.procedure_code == procedure:
            return rule.service_code, f"règle n° {rule.position} (démarche {procedure})"
    return default_service, "service par défaut (aucune règle ne correspond)"


async def on_request_received(session: AsyncSession, envelope: Envelope) -> None:
    event = RequestReceived.model_validate(envelope.data)
    tenant = await repository.get_tenant(session, envelope.tenant)
    if tenant is None:
        # Intake and routing disagree on tenants: a configuration fault to fix, not
        # a reason to block every later request on this partition.
        log.error("request %s for tenant %s unknown to routing", event.request_id, envelope.tenant)
        return
    service_code, why = choose_service(
        await repository.list_rules(session, envelope.tenant),
        tenant.default_service,
        event.procedure_code,
    )
    service = await repository.get_service(session, envelope.tenant, service_code)
    assert service is not None, "rules reference existing services (foreign key)"
    now = datetime.now(UTC)
    await repository.insert_assignment(
        session,
        {
            "request_id": event.request_id,
            "tenant": envelope.tenant,
            "tracking_code": event.tracking_code,
            "procedure_code": event.procedure_code,
            "procedure_title": event.procedure_title or "Demande à qualifier",
            "channel": event.channel,
            "applicant_name": event.applicant.name,
            "received_at": event.received_at,
            "service_code": service_code,
            "status": "assigned",
            "assigned_at": now,
            "rule": why,
        },
    )
    await repository.add_history(
        session, event.request_id, now, "assigned", f"Transmise au service : {service.name} ({why})"
    )
    await stage(
        session,
        RequestAssigned(
            request_id=event.request_id,
            tracking_code=event.tracking_code,
            procedure_code=event.procedure_code,
            channel=event.channel,
            service_code=service_code,
            service_name=service.name,
            rule=why,
            assigned_at=now,
        ).envelope(tenant=envelope.tenant, subject=str(event.request_id), occurred_at=now),
    )


def encode_cursor(received_at: datetime, request_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{received_at.isoformat()}|{request_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        stamp, request_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None:
            raise ValueError("naive cursor")
        return when, uuid.UUID(request_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise Problem(
            400,
            "cursor-invalid",
            "Curseur invalide",
            "Le curseur de pagination est invalide ; reprenez la liste depuis le "
            "début sans paramètre cursor.",
            [InvalidParam(name="cursor", reason="Curseur illisible.")],
        ) from exc


async def inbox(
    db: Database,
    *,
    tenant: str,
    service: str | None,
    status: str | None,
    channel: str | None,
    cursor: str | None,
    limit: int,
) -> Inbox:
    after = decode_cursor(cursor) if cursor else None
    async with db.sessions() as session:
        if await repository.get_tenant(session, tenant) is None:
            raise unknown_tenant(tenant)
        if service is not None and await repository.get_service(session, tenant, service) is None:
            raise Problem(
                404,
                "service-unknown",
                "Service inconnu",
                f"Le service « {service} » n'existe pas dans cette collectivité.",
                [InvalidParam(name="service", reason="Service inconnu.")],
            )
        names = {s.code: s.name for s in await repository.list_services(session, tenant)}
        rows = await repository.inbox_page(
            session,
            tenant=tenant,
            service=service,
            status=status,
            channel=channel,
            after=after,
            limit=limit + 1,
        )
    page = rows[:limit]
    items = [
        InboxItem(
            request_id=r.request_id,
            tracking_code=r.tracking_code,
            procedure=r.procedure_code,
            procedure_title=r.procedure_title,
            channel=r.channel,
            applicant_name=r.applicant_name,
            service=names.get(r.service_code, r.service_code),
            status=r.status,
            status_label=STATUS_LABELS.get(r.status, r.status),
            received_at=r.received_at,
            assigned_at=r.assigned_at,
        )
        for r in page
    ]
    next_cursor = (
        encode_cursor(page[-1].received_at, page[-1].request_id) if len(rows) > limit else None
    )
    return Inbox(items=items, next_cursor=next_cursor)


async def routing_table(db: Database, tenant: str) -> RoutingTable:
    async with db.sessions() as session:
        row = await repository.get_tenant(session, tenant)
        if row is None:
            raise unknown_tenant(tenant)
        services = await repository.list_services(session, tenant)
        rules = await repository.list_rules(session, tenant)
    return RoutingTable(
        tenant=tenant,
        default_service=row.default_service,
        services=[ServicePublic(code=s.code, name=s.name) for s in services],
        rules=[
            RulePublic(position=r.position, procedure=r.procedure_code, service=r.service_code)
            for r in rules
        ],
    )
