"""Every SQL query notifications runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_notifications.models import contacts, deliveries, request_services


async def get_contact(session: AsyncSession, request_id: uuid.UUID) -> sa.Row[Any] | None:
    query = sa.select(contacts).where(contacts.c.request_id == request_id)
    return (await session.execute(query)).first()


async def insert_contact(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(contacts.insert().values(**values))


async def insert_delivery(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(deliveries.insert().values(**values))


async def waiting_with_contact(session: AsyncSession) -> Sequence[Any]:
    """Deliveries still waiting for a contact that has since arrived, with that contact."""
    query = (
        sa.select(
            deliveries.c.id,
            deliveries.c.kind,
            contacts.c.email,
            contacts.c.postal_address,
            contacts.c.preference,
            contacts.c.channel,
        )
        .join(contacts, contacts.c.request_id == deliveries.c.request_id)
        .where(deliveries.c.status == "waiting_contact")
        .with_for_update(of=deliveries, skip_locked=True)
    )
    return (await session.execute(query)).all()


async def update_delivery(
    session: AsyncSession, delivery_id: uuid.UUID, values: dict[str, Any]
) -> None:
    await session.execute(
        deliveries.update().where(deliveries.c.id == delivery_id).values(**values)
    )


async def due_deliveries(session: AsyncSession, now: datetime, limit: int) -> Sequence[sa.Row[Any]]:
    query = (
        sa.select(deliveries)
        .where(
            deliveries.c.status == "pending",
            sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
        )
        .order_by(deliveries.c.created_at, deliveries.c.id)
        .limit(limit)
        # Several replicas may send; each delivery is held by one of them.
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(query)).all()


async def list_deliveries(
    session: AsyncSession, *, request_id: uuid.UUID | None, tracking_code: str | None
) -> Sequence[sa.Row[Any]]:
    query = sa.select(deliveries)
    if request_id is not None:
        query = query.where(deliveries.c.request_id == request_id)
    if tracking_code is not None:
        query = query.where(deliveries.c.tracking_code == tracking_code)
    query = query.order_by(deliveries.c.created_at, deliveries.c.id)
    return (await session.execute(query)).all()


async def set_request_service(
    session: AsyncSession, request_id: uuid.UUID, tenant: str, service_code: str
) -> None:
    await session.execute(
        sa.delete(request_services).where(request_services.c.request_id == request_id)
    )
    await session.execute(
        request_services.insert().values(
            request_id=request_id, tenant=tenant, service_code=service_code
        )
    )


async def request_services_of(
    session: AsyncSession, request_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, str]]:
    query = sa.select(request_services).where(request_services.c.request_id.in_(request_ids))
    return {r.request_id: (r.tenant, r.service_code) for r in (await session.execute(query)).all()}
