"""Every SQL query intake runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_intake.models import procedures, request_history, requests, services, tenants


async def get_tenant(session: AsyncSession, code: str) -> sa.Row[Any] | None:
    return (await session.execute(sa.select(tenants).where(tenants.c.code == code))).first()


async def get_procedure(session: AsyncSession, tenant: str, code: str) -> sa.Row[Any] | None:
    query = (
        sa.select(procedures, *_service_columns())
        .join(
            services,
            sa.and_(
                services.c.tenant == procedures.c.tenant,
                services.c.code == procedures.c.service_code,
            ),
        )
        .where(procedures.c.tenant == tenant, procedures.c.code == code)
    )
    return (await session.execute(query)).first()


async def list_procedures(session: AsyncSession, tenant: str) -> Sequence[sa.Row[Any]]:
    query = (
        sa.select(procedures, *_service_columns())
        .join(
            services,
            sa.and_(
                services.c.tenant == procedures.c.tenant,
                services.c.code == procedures.c.service_code,
            ),
        )
        .where(procedures.c.tenant == tenant)
        .order_by(procedures.c.code)
    )
    return (await session.execute(query)).all()


def _service_columns() -> list[sa.Label[Any]]:
    return [
        services.c.designation.label("service_designation"),
        services.c.postal_address.label("service_postal_address"),
        services.c.email.label("service_email"),
        services.c.phone.label("service_phone"),
    ]


async def insert_request(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(requests.insert().values(**values))


async def add_history(
    session: AsyncSession, request_id: uuid.UUID, at: datetime, status: str, label: str
) -> None:
    await session.execute(
        request_history.insert().values(request_id=request_id, at=at, status=status, label=label)
    )


async def get_request_by_code(session: AsyncSession, tracking_code: str) -> sa.Row[Any] | None:
    query = sa.select(requests).where(requests.c.tracking_code == tracking_code)
    return (await session.execute(query)).first()


async def get_request(session: AsyncSession, request_id: uuid.UUID) -> sa.Row[Any] | None:
    return (await session.execute(sa.select(requests).where(requests.c.id == request_id))).first()


async def history(session: AsyncSession, request_id: uuid.UUID) -> Sequence[sa.Row[Any]]:
    query = (
        sa.select(request_history)
        .where(request_history.c.request_id == request_id)
        .order_by(request_history.c.at, request_history.c.id)
    )
    return (await session.execute(query)).all()


async def set_assignment(
    session: AsyncSession, request_id: uuid.UUID, service_code: str, service_name: str, status: str
) -> None:
    await session.execute(
        requests.update()
        .where(requests.c.id == request_id)
        .values(
            status=status, assigned_service_code=service_code, assigned_service_name=service_name
        )
    )


async def tenant_exists(session: AsyncSession, code: str) -> bool:
    return await get_tenant(session, code) is not None


async def upsert_tenant(session: AsyncSession, code: str, name: str, timezone: str) -> bool:
    """Insert the tenant if absent; returns whether it was created."""
    if await tenant_exists(session, code):
        return False
    await session.execute(tenants.insert().values(code=code, name=name, timezone=timezone))
    return True


async def insert_service(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(services.insert().values(**values))


async def insert_procedure(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(procedures.insert().values(**values))
