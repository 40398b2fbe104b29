"""Every SQL query routing runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_routing.models import (
    assignments,
    neighbourhoods,
    rules,
    services,
    status_history,
    tenants,
    workflows,
)


async def get_tenant(session: AsyncSession, code: str) -> sa.Row[Any] | None:
    return (await session.execute(sa.select(tenants).where(tenants.c.code == code))).first()


async def list_services(session: AsyncSession, tenant: str) -> Sequence[sa.Row[Any]]:
    query = sa.select(services).where(services.c.tenant == tenant).order_by(services.c.code)
    return (await session.execute(query)).all()


async def list_rules(session: AsyncSession, tenant: str) -> Sequence[sa.Row[Any]]:
    query = sa.select(rules).where(rules.c.tenant == tenant).order_by(rules.c.position)
    return (await session.execute(query)).all()


async def get_service(session: AsyncSession, tenant: str, code: str) -> sa.Row[Any] | None:
    query = sa.select(services).where(services.c.tenant == tenant, services.c.code == code)
    return (await session.execute(query)).first()


async def get_assignment(session: AsyncSession, request_id: uuid.UUID) -> sa.Row[Any] | None:
    query = sa.select(assignments).where(assignments.c.request_id == request_id)
    return (await session.execute(query)).first()


async def insert_assignment(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(assignments.insert().values(**values))


async def add_history(
    session: AsyncSession,
    request_id: uuid.UUID,
    at: datetime,
    status: str,
    label: str,
    agent: str | None = None,
    comment: str | None = None,
) -> None:
    await session.execute(
        status_history.insert().values(
            request_id=request_id, at=at, status=status, label=label, agent=agent, comment=comment
        )
    )


@dataclass(frozen=True)
class InboxFilter:
    tenant: str
    service: str | None = None
    status: str | None = None
    channel: str | None = None
    procedure: str | None = None
    neighbourhood: str | None = None
    agent: str | None = None
    text: str | None = None
    overdue_at: datetime | None = None  # open requests past their service's commitment
    services: frozenset[str] | None = None  # R21: only these services' requests

    def conditions(self, with_status: bool = True) -> list[sa.ColumnElement[bool]]:
        found: list[sa.ColumnElement[bool]] = [assignments.c.tenant == self.tenant]
        for column, value in (
            (assignments.c.service_code, self.service),
            (assignments.c.channel, self.channel),
            (assignments.c.procedure_code, self.procedure),
            (assignments.c.neighbourhood, self.neighbourhood),
            (assignments.c.agent, self.agent),
        ):
            if value is not None:
                found.append(column == value)
        if self.services is not None:
            found.append(assignments.c.service_code.in_(sorted(self.services)))
        if with_status and self.status is not None:
            found.append(assignments.c.status == self.status)
        if self.text:
            pattern = f"%{self.text.replace('%', '').replace('_', '')}%"
            found.append(
                sa.or_(
                    assignments.c.tracking_code.ilike(pattern),
                    assignments.c.applicant_name.ilike(pattern),
                    assignments.c.procedure_title.ilike(pattern),
                )
            )
        if self.overdue_at is not None:
            found += [assignments.c.closed.is_(False), assignments.c.due_at < self.overdue_at]
        return found


async def inbox_page(
    session: AsyncSession, where: InboxFilter, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> Sequence[Any]:
    query = sa.select(assignments).where(*where.conditions())
    if after is not None:
        # Keyset pagination: stable while new requests arrive, unlike OFFSET.
        query = query.where(
            sa.tuple_(assignments.c.received_at, assignments.c.request_id)
            < sa.tuple_(
                sa.literal(after[0], type_=assignments.c.received_at.type),
                sa.literal(after[1], type_=sa.Uuid()),
            )
        )
    query = query.order_by(assignments.c.received_at.desc(), assignments.c.request_id.desc()).limit(
        limit
    )
    return (await session.execute(query)).all()


async def inbox_counts(session: AsyncSession, where: InboxFilter) -> dict[str, int]:
    """Requests per status under the same filters (the status filter aside)."""
    query = (
        sa.select(assignments.c.status, sa.func.count())
        .where(*where.conditions(with_status=False))
        .group_by(assignments.c.status)
    )
    return {status: count for status, count in (await session.execute(query)).all()}


async def set_agent(session: AsyncSession, request_id: uuid.UUID, agent: str | None) -> None:
    await session.execute(
        assignments.update().where(assignments.c.request_id == request_id).values(agent=agent)
    )


async def update_service(
    session: AsyncSession, tenant: str, code: str, values: dict[str, Any]
) -> None:
    await session.execute(
        services.update()
        .where(services.c.tenant == tenant, services.c.code == code)
        .values(**values)
    )


async def insert_tenant(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(tenants.insert().values(**values))


async def insert_service(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(services.insert().values(**values))


async def replace_rules(
    session: AsyncSession, tenant: str, default_service: str, rows: list[dict[str, Any]]
) -> None:
    """The whole ordered table at once: no request is ever routed by half an edit."""
    await session.execute(
        tenants.update().where(tenants.c.code == tenant).values(default_service=default_service)
    )
    await session.execute(rules.delete().where(rules.c.tenant == tenant))
    if rows:
        await session.execute(rules.insert(), [{"tenant": tenant, **row} for row in rows])


async def list_neighbourhoods(session: AsyncSession, tenant: str) -> Sequence[Any]:
    query = (
        sa.select(neighbourhoods)
        .where(neighbourhoods.c.tenant == tenant)
        .order_by(neighbourhoods.c.code)
    )
    return (await session.execute(query)).all()


async def upsert_neighbourhood(
    session: AsyncSession, tenant: str, code: str, name: str, geometry: dict[str, Any]
) -> bool:
    key = (neighbourhoods.c.tenant == tenant) & (neighbourhoods.c.code == code)
    if await session.scalar(sa.select(sa.literal(1)).where(key)):
        await session.execute(
            neighbourhoods.update().where(key).values(name=name, geometry=geometry)
        )
        return False
    await session.execute(
        neighbourhoods.insert().values(tenant=tenant, code=code, name=name, geometry=geometry)
    )
    return True


async def latest_workflow(session: AsyncSession, tenant: str, procedure: str) -> Any:
    """The newest version, or None when the procedure still uses the default circuit."""
    query = (
        sa.select(workflows)
        .where(workflows.c.tenant == tenant, workflows.c.procedure_code == procedure)
        .order_by(workflows.c.version.desc())
        .limit(1)
    )
    return (await session.execute(query)).first()


async def get_workflow(session: AsyncSession, tenant: str, procedure: str, version: int) -> Any:
    query = sa.select(workflows).where(
        workflows.c.tenant == tenant,
        workflows.c.procedure_code == procedure,
        workflows.c.version == version,
    )
    return (await session.execute(query)).first()


async def insert_workflow(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(workflows.insert().values(**values))


async def lock_assignment(session: AsyncSession, request_id: uuid.UUID) -> Any:
    query = sa.select(assignments).where(assignments.c.request_id == request_id).with_for_update()
    return (await session.execute(query)).first()


async def set_status(
    session: AsyncSession, request_id: uuid.UUID, status: str, label: str, phase: str, closed: bool
) -> None:
    await session.execute(
        assignments.update()
        .where(assignments.c.request_id == request_id)
        .values(status=status, status_label=label, phase=phase, closed=closed)
    )
