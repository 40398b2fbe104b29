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
    incident_policies,
    incidents,
    neighbourhoods,
    open311_tokens,
    reports,
    rules,
    services,
    status_history,
    teams,
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


async def get_service(
    session: AsyncSession, tenant: str, code: str, for_update: bool = False
) -> sa.Row[Any] | None:
    query = sa.select(services).where(services.c.tenant == tenant, services.c.code == code)
    if for_update:
        query = query.with_for_update()
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


async def history(session: AsyncSession, request_id: uuid.UUID) -> Sequence[Any]:
    query = (
        sa.select(
            status_history.c.at,
            status_history.c.status,
            status_history.c.label,
            status_history.c.agent,
            status_history.c.comment,
        )
        .where(status_history.c.request_id == request_id)
        .order_by(status_history.c.id)
    )
    return (await session.execute(query)).all()


@dataclass(frozen=True)
class InboxFilter:
    tenant: str
    service: str | None = None
    team: str | None = None
    status: str | None = None
    channel: str | None = None
    procedure: str | None = None
    neighbourhood: str | None = None
    agent: str | None = None
    text: str | None = None
    overdue_at: datetime | None = None  # open requests past their service's commitment
    duplicates: bool = False  # R30: reports merged into another's incident are hidden
    services: frozenset[str] | None = None  # R21: only these services' requests

    def conditions(self, with_status: bool = True) -> list[sa.ColumnElement[bool]]:
        found: list[sa.ColumnElement[bool]] = [assignments.c.tenant == self.tenant]
        for column, value in (
            (assignments.c.service_code, self.service),
            (assignments.c.team_code, self.team),
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
            found += [assignments.c.closed == sa.false(), assignments.c.due_at < self.overdue_at]
        if not self.duplicates:
            found.append(assignments.c.duplicate == sa.false())
        return found


async def inbox_page(
    session: AsyncSession, where: InboxFilter, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> Sequence[Any]:
    newest_first = (assignments.c.received_at.desc(), assignments.c.request_id.desc())
    keys = sa.select(assignments.c.request_id).where(*where.conditions())
    if after is not None:
        # Keyset pagination: stable while new requests arrive, unlike OFFSET.
        keys = keys.where(
            sa.tuple_(assignments.c.received_at, assignments.c.request_id)
            < sa.tuple_(
                sa.literal(after[0], type_=assignments.c.received_at.type),
                sa.literal(after[1], type_=sa.Uuid()),
            )
        )
    # The page's keys come from an index alone (filters checked on its entries, see
    # models.py); only the rows shown are then read.
    keys = keys.order_by(*newest_first).limit(limit)
    query = (
        sa.select(assignments)
        .where(assignments.c.request_id.in_(keys.scalar_subquery()))
        .order_by(*newest_first)
    )
    return (await session.execute(query)).all()


async def inbox_counts(session: AsyncSession, where: InboxFilter) -> dict[str, int]:
    """Open requests per status under the same filters (the status filter aside): the work
    in progress, which partial indexes keep cheap, not the whole archive."""
    query = (
        sa.select(assignments.c.status, sa.func.count())
        .where(*where.conditions(with_status=False), assignments.c.closed == sa.false())
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
    session: AsyncSession,
    request_id: uuid.UUID,
    status: str,
    label: str,
    phase: str,
    closed: bool,
    **values: Any,
) -> int:
    """Returns the request's status change count, this one included."""
    result = await session.execute(
        assignments.update()
        .where(assignments.c.request_id == request_id)
        .values(
            status=status,
            status_label=label,
            phase=phase,
            closed=closed,
            status_seq=assignments.c.status_seq + 1,
            **values,
        )
        .returning(assignments.c.status_seq)
    )
    return int(result.scalar_one())


async def update_assignment(
    session: AsyncSession, request_id: uuid.UUID, values: dict[str, Any]
) -> None:
    await session.execute(
        assignments.update().where(assignments.c.request_id == request_id).values(**values)
    )


async def list_teams(session: AsyncSession, tenant: str) -> Sequence[sa.Row[Any]]:
    query = (
        sa.select(teams)
        .where(teams.c.tenant == tenant)
        .order_by(teams.c.service_code, teams.c.code)
    )
    return (await session.execute(query)).all()


async def upsert_team(
    session: AsyncSession, tenant: str, service_code: str, code: str, name: str
) -> bool:
    key = (
        (teams.c.tenant == tenant) & (teams.c.service_code == service_code) & (teams.c.code == code)
    )
    if await session.scalar(sa.select(sa.literal(1)).where(key)):
        await session.execute(teams.update().where(key).values(name=name))
        return False
    await session.execute(
        teams.insert().values(tenant=tenant, service_code=service_code, code=code, name=name)
    )
    return True


async def timers_due(session: AsyncSession, now: datetime, limit: int) -> Sequence[Any]:
    """Requests whose timed transition is due, locked for this pass (other replicas skip them)."""
    query = (
        sa.select(assignments)
        .where(assignments.c.auto_at <= now)
        .order_by(assignments.c.auto_at, assignments.c.request_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(query)).all()


async def digest_services(session: AsyncSession) -> Sequence[Any]:
    """Services consulting their queue periodically, with their tenant's time zone."""
    query = (
        sa.select(services, tenants.c.timezone)
        .join(tenants, tenants.c.code == services.c.tenant)
        .where(services.c.alert_mode == "digest", services.c.email.isnot(None))
        .order_by(services.c.tenant, services.c.code)
    )
    return (await session.execute(query)).all()


async def lock_service(session: AsyncSession, tenant: str, code: str) -> Any:
    query = (
        sa.select(services)
        .where(services.c.tenant == tenant, services.c.code == code)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(query)).first()


# -- R30: incidents ---------------------------------------------------------------------------


async def incident_policy(session: AsyncSession, tenant: str, procedure: str) -> Any:
    """The procedure's own radius and window, else the tenant's ("*"), else None."""
    query = (
        sa.select(incident_policies)
        .where(
            incident_policies.c.tenant == tenant,
            incident_policies.c.procedure_code.in_([procedure, "*"]),
        )
        .order_by(sa.case((incident_policies.c.procedure_code == "*", 1), else_=0))
        .limit(1)
    )
    return (await session.execute(query)).first()


async def digest_new(
    session: AsyncSession, tenant: str, service: str, since: datetime, until: datetime, limit: int
) -> tuple[int, Sequence[Any]]:
    """Requests assigned to the service in [since, until): how many, and the oldest `limit`."""
    where = (
        assignments.c.tenant == tenant,
        assignments.c.service_code == service,
        assignments.c.assigned_at >= since,
        assignments.c.assigned_at < until,
    )
    total = await session.scalar(sa.select(sa.func.count()).select_from(assignments).where(*where))
    query = (
        sa.select(assignments)
        .where(*where)
        .order_by(assignments.c.assigned_at, assignments.c.request_id)
        .limit(limit)
    )
    return int(total or 0), (await session.execute(query)).all()


async def digest_overdue(
    session: AsyncSession, tenant: str, service: str, at: datetime, limit: int
) -> tuple[int, Sequence[Any]]:
    """Open requests of the service past their commitment at `at`, most late first."""
    where = (
        assignments.c.tenant == tenant,
        assignments.c.service_code == service,
        assignments.c.closed.is_(False),
        assignments.c.due_at < at,
    )
    total = await session.scalar(sa.select(sa.func.count()).select_from(assignments).where(*where))
    query = (
        sa.select(assignments)
        .where(*where)
        .order_by(assignments.c.due_at, assignments.c.request_id)
        .limit(limit)
    )
    return int(total or 0), (await session.execute(query)).all()


async def incident_policy_row(session: AsyncSession, tenant: str, procedure: str) -> Any:
    query = sa.select(incident_policies).where(
        incident_policies.c.tenant == tenant, incident_policies.c.procedure_code == procedure
    )
    return (await session.execute(query)).first()


async def upsert_incident_policy(
    session: AsyncSession, tenant: str, procedure: str, radius_m: int, window_days: int
) -> None:
    key = (incident_policies.c.tenant == tenant) & (incident_policies.c.procedure_code == procedure)
    values = {"radius_m": radius_m, "window_days": window_days}
    if await session.scalar(sa.select(sa.literal(1)).where(key)):
        await session.execute(incident_policies.update().where(key).values(**values))
    else:
        await session.execute(
            incident_policies.insert().values(tenant=tenant, procedure_code=procedure, **values)
        )


async def lock_tenant(session: AsyncSession, tenant: str) -> None:
    """Serialises incident look-ups of one tenant (PostgreSQL; SQLite has one writer anyway),
    so two reports of one pothole arriving together cannot open two incidents."""
    await session.execute(
        sa.select(tenants.c.code).where(tenants.c.code == tenant).with_for_update()
    )


def open_incidents_query(
    tenant: str, procedure: str, since: datetime, box: tuple[float, float, float, float]
) -> sa.Select[Any]:
    """Open incidents opened since `since` inside (south, west, north, east): the indexed
    prefilter; the caller keeps those truly within the radius."""
    south, west, north, east = box
    return sa.select(incidents).where(
        incidents.c.tenant == tenant,
        incidents.c.procedure_code == procedure,
        incidents.c.closed.is_(False),
        incidents.c.latitude.between(south, north),
        incidents.c.longitude.between(west, east),
        incidents.c.opened_at >= since,
    )


async def open_incidents_in_box(
    session: AsyncSession,
    tenant: str,
    procedure: str,
    since: datetime,
    box: tuple[float, float, float, float],
) -> Sequence[Any]:
    rows: Sequence[Any] = (
        await session.execute(open_incidents_query(tenant, procedure, since, box))
    ).all()
    return rows


async def insert_incident(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(incidents.insert().values(**values))


async def add_reporter(session: AsyncSession, incident_id: uuid.UUID) -> None:
    await session.execute(
        incidents.update()
        .where(incidents.c.id == incident_id)
        .values(reporters=incidents.c.reporters + 1)
    )


async def insert_report(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(reports.insert().values(**values))


async def open_incident_led_by(session: AsyncSession, request_id: uuid.UUID) -> Any:
    query = sa.select(incidents).where(
        incidents.c.request_id == request_id, incidents.c.closed.is_(False)
    )
    return (await session.execute(query)).first()


async def close_incident(
    session: AsyncSession, incident_id: uuid.UUID, closed: bool = True
) -> None:
    await session.execute(
        incidents.update().where(incidents.c.id == incident_id).values(closed=closed)
    )


async def get_incident(session: AsyncSession, incident_id: uuid.UUID) -> Any:
    return (await session.execute(sa.select(incidents).where(incidents.c.id == incident_id))).one()


async def reports_closed_by_transfer(
    session: AsyncSession, incident_id: uuid.UUID, lead: uuid.UUID
) -> Sequence[Any]:
    """The incident's other reports its first report's transfer closed, locked."""
    query = (
        sa.select(assignments)
        .where(
            assignments.c.transfer_incident == incident_id,
            assignments.c.request_id != lead,
            assignments.c.closed.is_(True),
        )
        .order_by(assignments.c.received_at, assignments.c.request_id)
        .with_for_update()
    )
    return (await session.execute(query)).all()


async def merge_incident(session: AsyncSession, merged: Any, into: uuid.UUID) -> bool:
    """`merged`'s reports join `into` as its duplicates, `merged` closed; False if it was
    closed meanwhile (its first report answered): then nothing moves."""
    result = await session.execute(
        incidents.update()
        .where(incidents.c.id == merged.id, incidents.c.closed.is_(False))
        .values(closed=True)
    )
    if not getattr(result, "rowcount", 0):
        return False
    await session.execute(
        reports.update()
        .where(reports.c.incident_id == merged.id)
        .values(incident_id=into, duplicate=True)
    )
    await update_assignment(session, merged.request_id, {"duplicate": True})
    await session.execute(
        incidents.update()
        .where(incidents.c.id == into)
        .values(reporters=incidents.c.reporters + merged.reporters)
    )
    return True


async def open_duplicates(session: AsyncSession, incident_id: uuid.UUID) -> Sequence[Any]:
    """The incident's other reports still open, locked: they close with it."""
    query = (
        sa.select(assignments)
        .join(reports, reports.c.request_id == assignments.c.request_id)
        .where(
            reports.c.incident_id == incident_id,
            reports.c.duplicate.is_(True),
            assignments.c.closed.is_(False),
        )
        .order_by(assignments.c.received_at, assignments.c.request_id)
        .with_for_update(of=assignments)
    )
    return (await session.execute(query)).all()


async def incidents_of(
    session: AsyncSession, request_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[uuid.UUID, int]]:
    """For each of these requests that is a report: its incident and how many reported it."""
    if not request_ids:
        return {}
    query = (
        sa.select(reports.c.request_id, incidents.c.id, incidents.c.reporters)
        .join(incidents, incidents.c.id == reports.c.incident_id)
        .where(reports.c.request_id.in_(request_ids))
    )
    return {r: (i, n) for r, i, n in (await session.execute(query)).all()}


# -- Open311 ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFilter:
    tenant: str
    tracking_codes: Sequence[str] = ()
    procedures: Sequence[str] = ()
    closed: bool | None = None
    start: datetime | None = None
    end: datetime | None = None


def _report_query() -> sa.Select[Any]:
    updated = (
        sa.select(status_history.c.request_id, sa.func.max(status_history.c.at).label("at"))
        .group_by(status_history.c.request_id)
        .subquery()
    )
    return (
        sa.select(
            assignments,
            services.c.name.label("service_name"),
            reports.c.latitude,
            reports.c.longitude,
            reports.c.address,
            reports.c.description,
            reports.c.media_url,
            incidents.c.reporters,
            updated.c.at.label("updated_at"),
        )
        .join(reports, reports.c.request_id == assignments.c.request_id)
        .join(incidents, incidents.c.id == reports.c.incident_id)
        .join(
            services,
            (services.c.tenant == assignments.c.tenant)
            & (services.c.code == assignments.c.service_code),
        )
        .outerjoin(updated, updated.c.request_id == assignments.c.request_id)
    )


async def list_reports(
    session: AsyncSession, where: ReportFilter, limit: int
) -> Sequence[sa.Row[Any]]:
    query = _report_query().where(assignments.c.tenant == where.tenant)
    if where.tracking_codes:
        query = query.where(assignments.c.tracking_code.in_(where.tracking_codes))
    else:
        if where.procedures:
            query = query.where(assignments.c.procedure_code.in_(where.procedures))
        if where.closed is not None:
            query = query.where(assignments.c.closed.is_(where.closed))
        if where.start is not None:
            query = query.where(assignments.c.received_at >= where.start)
        if where.end is not None:
            query = query.where(assignments.c.received_at <= where.end)
    query = query.order_by(assignments.c.received_at.desc(), assignments.c.request_id.desc()).limit(
        limit
    )
    rows: Sequence[sa.Row[Any]] = (await session.execute(query)).all()
    return rows


async def insert_token(session: AsyncSession, token: uuid.UUID, tenant: str, at: datetime) -> None:
    if await session.scalar(sa.select(sa.literal(1)).where(open311_tokens.c.token == token)):
        return  # a replayed submission hands back the same token
    await session.execute(open311_tokens.insert().values(token=token, tenant=tenant, created_at=at))


async def get_token(session: AsyncSession, token: uuid.UUID) -> Any:
    query = sa.select(open311_tokens).where(open311_tokens.c.token == token)
    return (await session.execute(query)).first()


async def tenant_codes(session: AsyncSession, limit: int) -> list[str]:
    query = sa.select(tenants.c.code).order_by(tenants.c.code).limit(limit)
    return list(await session.scalars(query))
