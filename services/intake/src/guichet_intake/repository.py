"""Every SQL query intake runs."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_intake.deadlines import territory_code
from guichet_intake.models import (
    agent_accounts,
    api_clients,
    mandates,
    outgoing_transfers,
    pieces_requests,
    procedures,
    receipts,
    request_history,
    requests,
    services,
    signing_keys,
    sources,
    tenants,
)
from guichet_intake.schemas import Channel
from guichet_plumbing.db import Batches, Grouped, Rows
from guichet_plumbing.tables import idempotency_keys, outbox


async def get_tenant(session: AsyncSession, code: str) -> Any:  # None when absent
    return (await session.execute(sa.select(tenants).where(tenants.c.code == code))).first()


def _procedure_query() -> Any:
    return sa.select(
        procedures,
        services.c.designation.label("service_designation"),
        services.c.postal_address.label("service_postal_address"),
        services.c.email.label("service_email"),
        services.c.phone.label("service_phone"),
    ).join(
        services,
        sa.and_(
            services.c.tenant == procedures.c.tenant, services.c.code == procedures.c.service_code
        ),
    )


async def get_procedure(session: AsyncSession, tenant: str, code: str) -> Any:  # None when absent
    query = _procedure_query().where(procedures.c.tenant == tenant, procedures.c.code == code)
    return (await session.execute(query)).first()


async def list_procedures(
    session: AsyncSession, tenant: str, regime: str | None = None
) -> Sequence[Any]:
    query = _procedure_query().where(procedures.c.tenant == tenant)
    if regime is not None:
        query = query.where(procedures.c.regime == regime)
    return (await session.execute(query.order_by(procedures.c.code))).all()


async def upsert_procedure(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Returns whether the procedure was created (else replaced)."""
    key = (procedures.c.tenant == values["tenant"]) & (procedures.c.code == values["code"])
    exists = await session.scalar(sa.select(sa.literal(1)).where(key))
    if exists:
        await session.execute(procedures.update().where(key).values(**values))
        return False
    await session.execute(procedures.insert().values(**values))
    return True


async def get_service(session: AsyncSession, tenant: str, code: str) -> Any:  # None when absent
    query = sa.select(services).where(services.c.tenant == tenant, services.c.code == code)
    return (await session.execute(query)).first()


async def upsert_service(session: AsyncSession, values: dict[str, Any]) -> bool:
    key = (services.c.tenant == values["tenant"]) & (services.c.code == values["code"])
    exists = await session.scalar(sa.select(sa.literal(1)).where(key))
    if exists:
        await session.execute(services.update().where(key).values(**values))
        return False
    await session.execute(services.insert().values(**values))
    return True


async def insert_request(session: AsyncSession, values: dict[str, Any]) -> None:
    # Parameters apart from the statement: one compiled INSERT, reused from the cache.
    await session.execute(requests.insert(), values)


async def update_request(
    session: AsyncSession, request_id: uuid.UUID, values: dict[str, Any]
) -> None:
    await session.execute(requests.update().where(requests.c.id == request_id).values(**values))


async def add_history(
    session: AsyncSession, request_id: uuid.UUID, at: datetime, status: str, label: str
) -> None:
    await session.execute(
        request_history.insert().values(request_id=request_id, at=at, status=status, label=label)
    )


async def add_history_rows(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(request_history.insert(), rows)


async def get_request_by_code(
    session: AsyncSession, tracking_code: str, for_update: bool = False
) -> Any:  # None when absent
    query = sa.select(requests).where(requests.c.tracking_code == tracking_code)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def get_request(
    session: AsyncSession, request_id: uuid.UUID, for_update: bool = False
) -> Any:  # None when absent
    query = sa.select(requests).where(requests.c.id == request_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def history(session: AsyncSession, request_id: uuid.UUID) -> Sequence[Any]:
    query = (
        sa.select(request_history)
        .where(request_history.c.request_id == request_id)
        .order_by(request_history.c.at, request_history.c.id)
    )
    return (await session.execute(query)).all()


async def insert_pieces_request(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(pieces_requests.insert().values(**values))


async def pieces_for(session: AsyncSession, request_id: uuid.UUID) -> Sequence[Any]:
    query = (
        sa.select(pieces_requests)
        .where(pieces_requests.c.request_id == request_id)
        .order_by(pieces_requests.c.requested_on, pieces_requests.c.id)
    )
    return (await session.execute(query)).all()


async def mark_pieces_received(
    session: AsyncSession, request_id: uuid.UUID, received_on: date
) -> int:
    result = await session.execute(
        pieces_requests.update()
        .where(pieces_requests.c.request_id == request_id, pieces_requests.c.received_on.is_(None))
        .values(received_on=received_on)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def insert_receipts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(receipts.insert(), rows)


async def get_receipt(session: AsyncSession, receipt_id: uuid.UUID) -> Any:  # None when absent
    return (await session.execute(sa.select(receipts).where(receipts.c.id == receipt_id))).first()


async def receipts_for(session: AsyncSession, request_id: uuid.UUID) -> Sequence[Any]:
    query = (
        sa.select(receipts)
        .where(receipts.c.request_id == request_id)
        .order_by(receipts.c.issued_at, receipts.c.id)
    )
    return (await session.execute(query)).all()


async def signing_keys_for(session: AsyncSession, tenant: str | None = None) -> Sequence[Any]:
    query = sa.select(signing_keys).order_by(signing_keys.c.created_at, signing_keys.c.kid)
    if tenant is not None:
        query = query.where(signing_keys.c.tenant == tenant)
    return (await session.execute(query)).all()


async def insert_signing_key(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(signing_keys.insert().values(**values))


async def retire_signing_keys(session: AsyncSession, tenant: str, at: datetime) -> None:
    await session.execute(
        signing_keys.update()
        .where(signing_keys.c.tenant == tenant, signing_keys.c.retired_at.is_(None))
        .values(retired_at=at)
    )


async def insert_outgoing_transfer(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(outgoing_transfers.insert().values(**values))


async def outgoing_transfer(
    session: AsyncSession, request_id: uuid.UUID, for_update: bool = False
) -> Any:  # None when absent
    query = sa.select(outgoing_transfers).where(outgoing_transfers.c.request_id == request_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def set_outgoing_token(session: AsyncSession, request_id: uuid.UUID, token: str) -> None:
    await session.execute(
        outgoing_transfers.update()
        .where(outgoing_transfers.c.request_id == request_id)
        .values(token=token)
    )


async def claim_outgoing_transfers(
    session: AsyncSession, now: datetime, lease: timedelta, limit: int
) -> list[uuid.UUID]:
    """Transfers due for an attempt, held for this caller alone: the n-th (sent after
    n - 1 others) for n leases."""
    query = (
        sa.select(outgoing_transfers.c.request_id)
        .where(
            outgoing_transfers.c.next_attempt_at <= now, outgoing_transfers.c.refused_at.is_(None)
        )
        .order_by(outgoing_transfers.c.next_attempt_at, outgoing_transfers.c.request_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    due = list((await session.scalars(query)).all())
    for position, request_id in enumerate(due, 1):
        await session.execute(
            outgoing_transfers.update()
            .where(outgoing_transfers.c.request_id == request_id)
            .values(next_attempt_at=now + position * lease)
        )
    return due


async def unaccepted_transfers(session: AsyncSession, closed: Sequence[str]) -> int:
    """Transfers tried and not accepted, of requests still open here, or rejected by
    silence after the transfer was asked (it is still to be made: `_still_owed`)."""
    still_owed = sa.and_(
        requests.c.status == "implicitly_rejected",
        sa.func.coalesce(outgoing_transfers.c.first_asked_at, outgoing_transfers.c.requested_at)
        < requests.c.decision_due_at,
        requests.c.answered_at.is_(None),
        requests.c.transferred_to.is_(None),
    )
    query = (
        sa.select(sa.func.count())
        .select_from(outgoing_transfers.join(requests))
        .where(
            outgoing_transfers.c.attempts > 0,
            sa.or_(requests.c.status.not_in(closed), still_owed),
        )
    )
    return int(await session.scalar(query) or 0)


async def release_outgoing_transfer(
    session: AsyncSession, request_id: uuid.UUID, held_until: datetime
) -> bool:
    """Drop a transfer its first sender gave up on, unless the sweep took it over."""
    result = await session.execute(
        outgoing_transfers.delete()
        .where(
            outgoing_transfers.c.request_id == request_id,
            outgoing_transfers.c.attempts == 0,
            outgoing_transfers.c.next_attempt_at == held_until,
        )
        .returning(outgoing_transfers.c.request_id)
    )
    return result.first() is not None


async def update_outgoing_transfer(
    session: AsyncSession, request_id: uuid.UUID, values: dict[str, Any]
) -> None:
    await session.execute(
        outgoing_transfers.update()
        .where(outgoing_transfers.c.request_id == request_id)
        .values(**values)
    )


async def delete_outgoing_transfer(session: AsyncSession, request_id: uuid.UUID) -> None:
    await session.execute(
        outgoing_transfers.delete().where(outgoing_transfers.c.request_id == request_id)
    )


# R13: an SVA runs only from reception by the competent administration. A transfer asked
# before the deadline says this one is not: while it is on its way, the SVA waits. Accepted
# there, none is born here; refused for good, nothing changed and it is born on its day.
_SVA_ON_ITS_WAY = sa.and_(
    requests.c.regime == "sva",
    sa.select(outgoing_transfers.c.request_id)
    .where(
        outgoing_transfers.c.request_id == requests.c.id,
        outgoing_transfers.c.refused_at.is_(None),
        outgoing_transfers.c.requested_at < requests.c.decision_due_at,
    )
    .exists(),
)


async def decisions_due(session: AsyncSession, now: datetime, limit: int) -> Sequence[Any]:
    query = (
        sa.select(requests)
        .where(
            requests.c.decision_due_at <= now,
            requests.c.implicit_decision.is_(None),
            # A suspended SVR clock already includes the whole time granted for the pieces:
            # if they never come, the rejection is born on that date all the same.
            requests.c.clock_state.in_(("running", "suspended")),
            sa.not_(_SVA_ON_ITS_WAY),
        )
        .order_by(requests.c.decision_due_at, requests.c.id)
        .limit(limit)
        # Several replicas may run the scheduler; each request is decided once.
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(query)).all()


def _has_receipt(kinds: tuple[str, ...]) -> sa.Exists:
    return (
        sa.select(receipts.c.id)
        .where(receipts.c.request_id == requests.c.id, receipts.c.kind.in_(kinds))
        .exists()
    )


# An AR given makes the AE moot: either acknowledges the electronic send (R2, R3).
_ACKNOWLEDGED = _has_receipt(("accuse_enregistrement", "accuse_reception"))


async def overdue_receipts(
    session: AsyncSession, tenant: str | None, today_by_tenant: dict[str, date]
) -> Sequence[Any]:
    """Requests whose AR (R4) or AE (R3) is past its due date, unissued."""
    conditions: list[sa.ColumnElement[bool]] = [requests.c.abusive.is_(False)]
    if tenant is not None:
        conditions.append(requests.c.tenant == tenant)
    per_tenant = [
        (requests.c.tenant == code)
        & sa.or_(
            requests.c.receipt_issued_at.is_(None) & (requests.c.receipt_due_on < today),
            (requests.c.registration_due_on < today) & ~_ACKNOWLEDGED,
        )
        for code, today in today_by_tenant.items()
    ]
    if not per_tenant:
        return []
    query = (
        sa.select(requests)
        .where(*conditions, sa.or_(*per_tenant))
        .order_by(
            sa.func.coalesce(requests.c.registration_due_on, requests.c.receipt_due_on),
            requests.c.received_at,
        )
    )
    return (await session.execute(query)).all()


async def receipts_owed(
    session: AsyncSession, closed: Sequence[str], limit: int, skipped: Collection[str] = ()
) -> Sequence[Any]:
    """Requests stored without the receipt they are owed (R23: signing failed at reception),
    but those of the `skipped` collectivités.

    The submission path marks them: `receipt_due_on` set on a qualified request with no AR,
    or `registration_due_on` set on an electronic one with no AE. An AR whose SVA a
    transfer on its way holds back waits for the transfer's outcome."""
    ar_owed = (
        requests.c.procedure_code.isnot(None)
        & requests.c.receipt_issued_at.is_(None)
        & requests.c.receipt_due_on.isnot(None)
        # An SVA held by a transfer on its way: whether it is born here, and so what the
        # AR must say, waits for the transfer's outcome, a day at the most (R13).
        & sa.not_(_SVA_ON_ITS_WAY)
    )
    ae_owed = (
        requests.c.procedure_code.is_(None)
        & requests.c.registration_due_on.isnot(None)
        & ~_ACKNOWLEDGED
    )
    query = (
        sa.select(requests)
        .where(
            requests.c.abusive.is_(False),
            requests.c.status.notin_(closed),
            sa.or_(ar_owed, ae_owed),
            requests.c.tenant.notin_(sorted(skipped)) if skipped else sa.true(),
        )
        .order_by(requests.c.received_at, requests.c.id)
        .limit(limit)
        # Several replicas may sweep; each receipt is issued once.
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(query)).all()


async def list_tenants(session: AsyncSession) -> Sequence[Any]:
    return (await session.execute(sa.select(tenants).order_by(tenants.c.code))).all()


@dataclass(frozen=True)
class SourceActivity:
    """What R9 needs to know of one source: how many it sent since `since` (counted up to
    the flood threshold only), and how many times this very content came in the window."""

    sent: int
    same: int  # earlier sends of this very content in the window, counted up to the threshold


# R9 (L112-11) weighs what a source sent electronically: what agents entered on its behalf
# at the counter, by phone or from a letter (R22) is not its sending.
SENT_CHANNELS = sorted(c.value for c in Channel if c.electronic)


def _source_activity_query(
    tenant: str,
    source: str,
    since: datetime,
    repeat_since: datetime,
    content_hash: str,
    cap: int,
    repeat_cap: int,
) -> Any:
    # Sends read late (a mailbox connector down) were not sent in the window (R9, R23).
    of_source = (
        (requests.c.tenant == tenant)
        & (requests.c.source == source)
        & requests.c.channel.in_(SENT_CHANNELS)
        & requests.c.read_late.isnot(True)
    )
    # Counting stops at `cap`: a flood costs the same to detect at 31 as at 10,000.
    capped = (
        sa.select(sa.literal(1)).where(of_source, requests.c.received_at >= since).limit(cap)
    ).subquery()
    same = (
        sa.select(sa.literal(1))
        .where(
            of_source,
            requests.c.received_at >= repeat_since,
            requests.c.content_hash == content_hash,
        )
        .limit(repeat_cap)
    ).subquery()
    return sa.select(
        sa.select(sa.func.count()).select_from(capped).scalar_subquery(),
        sa.select(sa.func.count()).select_from(same).scalar_subquery(),
    )


async def source_activity(
    session: AsyncSession,
    tenant: str,
    source: str,
    since: datetime,
    repeat_since: datetime,
    content_hash: str,
    cap: int,
    repeat_cap: int,
) -> SourceActivity:
    query = _source_activity_query(
        tenant, source, since, repeat_since, content_hash, cap, repeat_cap
    )
    sent, same = (await session.execute(query)).one()
    return SourceActivity(int(sent), int(same))


async def flagged_count(session: AsyncSession, tenant: str, source: str) -> int:
    query = sa.select(sa.func.count()).where(
        requests.c.tenant == tenant, requests.c.source == source, requests.c.abusive.is_(True)
    )
    return int(await session.scalar(query) or 0)


async def latest_from_source(session: AsyncSession, tenant: str, source: str) -> Any:
    query = (
        sa.select(requests)
        .where(requests.c.tenant == tenant, requests.c.source == source)
        .order_by(requests.c.received_at.desc(), requests.c.id)
        .limit(1)
    )
    return (await session.execute(query)).first()  # None when it never sent anything


async def get_source(session: AsyncSession, tenant: str, source: str) -> Any:  # None when absent
    query = sa.select(sources).where(sources.c.tenant == tenant, sources.c.source == source)
    return (await session.execute(query)).first()


async def blocked_sources(session: AsyncSession, tenant: str) -> dict[str, datetime]:
    """The tenant's blocked sources, each with when it was blocked."""
    query = sa.select(sources.c.source, sources.c.blocked_at).where(
        sources.c.tenant == tenant, sources.c.blocked_at.isnot(None)
    )
    return {source: blocked_at for source, blocked_at in await session.execute(query)}


async def upsert_source(
    session: AsyncSession, tenant: str, source: str, values: dict[str, Any]
) -> None:
    if await get_source(session, tenant, source) is None:
        await session.execute(sources.insert().values(tenant=tenant, source=source, **values))
    else:
        await session.execute(
            sources.update()
            .where(sources.c.tenant == tenant, sources.c.source == source)
            .values(**values)
        )


async def flagged_sources(session: AsyncSession, tenant: str) -> Sequence[Any]:
    flagged = (
        sa.select(requests.c.source, sa.func.count().label("flagged"))
        .where(requests.c.tenant == tenant, requests.c.abusive.is_(True))
        .group_by(requests.c.source)
        .subquery()
    )
    query = (
        sa.select(
            flagged.c.source,
            flagged.c.flagged,
            sources.c.noticed_at,
            sources.c.blocked_at,
            sources.c.reason,
        )
        .select_from(
            flagged.outerjoin(
                sources, sa.and_(sources.c.tenant == tenant, sources.c.source == flagged.c.source)
            )
        )
        .order_by(flagged.c.flagged.desc(), flagged.c.source)
    )
    return (await session.execute(query)).all()


async def upsert_tenant(
    session: AsyncSession, code: str, name: str, timezone: str, territory: str | None = None
) -> bool:
    """Insert the tenant if absent; returns whether it was created."""
    # Every date of the law is local to it: an unknown zone or territory (whose public
    # holidays set the working days) fails here, once, not at a submission.
    ZoneInfo(timezone)
    territory = territory_code(territory, timezone)
    if await get_tenant(session, code) is not None:
        return False
    await session.execute(
        tenants.insert().values(code=code, name=name, timezone=timezone, territory=territory)
    )
    return True


# -- PostgreSQL hot path: a submission in two round trips on a bare connection -------------

# The answer kept under an Idempotency-Key, and the source's activity for R9 (as
# `source_activity` reads it).
_SUBMISSION_READS = """
SELECT
    k.fingerprint,
    k.status_code,
    k.body,
    (SELECT count(*) FROM (
        SELECT 1 FROM requests AS r
        WHERE r.tenant = x.tenant AND r.source = x.source AND r.received_at >= x.since
        AND r.channel = ANY($10::text[]) AND r.read_late IS NOT TRUE LIMIT x.cap
    ) AS capped),
    (SELECT count(*) FROM (
        SELECT 1 FROM requests AS r
        WHERE r.tenant = x.tenant AND r.source = x.source AND r.received_at >= x.repeat_since
        AND r.channel = ANY($10::text[]) AND r.read_late IS NOT TRUE
        AND r.content_hash = x.content_hash LIMIT x.repeat_cap
    ) AS same)
FROM unnest(
    $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[],
    $8::int[], $9::int[]
) WITH ORDINALITY AS x(key, tenant, source, since, repeat_since, content_hash, cap, repeat_cap, n)
LEFT JOIN idempotency_keys AS k ON k.scope = $1 AND k.key = x.key
ORDER BY x.n
"""


@dataclass(frozen=True)
class SubmissionRead:
    """What one submission reads before it is written: the answer kept under its
    `Idempotency-Key`, and its source's R9 activity (counted up to the caps)."""

    key: str | None
    tenant: str
    source: str
    since: datetime
    repeat_since: datetime
    content_hash: str
    cap: int
    repeat_cap: int


Kept = tuple[str, int, bytes]  # (fingerprint, status, body) kept under a key


async def submission_reads(
    conn: asyncpg.Connection, scope: str, reads: Sequence[SubmissionRead]
) -> list[tuple[Kept | None, SourceActivity]]:
    """Several submissions' reads in one statement, in their order."""
    columns = [[getattr(r, f.name) for r in reads] for f in fields(SubmissionRead)]
    return [
        (
            (fingerprint, status_code, body) if fingerprint is not None else None,
            SourceActivity(sent, same),
        )
        for fingerprint, status_code, body, sent, same in await conn.fetch(
            _SUBMISSION_READS, scope, *columns, SENT_CHANNELS
        )
    ]


async def insert_submission(
    writes: Grouped[Batches, None],
    request: dict[str, Any],
    history: Rows,
    receipt_rows: Rows,
    events: Rows,
    remembered: Rows,
) -> None:
    """A new request and all that goes with it, in ONE statement (so one transaction),
    possibly beside other submissions committed with it."""
    try:
        await writes(
            [
                (requests, [request]),
                (request_history, history),
                (receipts, receipt_rows),
                (outbox, events),
                (idempotency_keys, remembered),
            ],
        )
    except asyncpg.UniqueViolationError as exc:
        # Same signal as the session path: a concurrent retry with this key won.
        raise IntegrityError("insert_submission", None, exc) from exc


# -- identity and access ------------------------------------------------------------------------


async def get_agent_account(session: AsyncSession, tenant: str, subject: str) -> Any:
    query = sa.select(agent_accounts).where(
        agent_accounts.c.tenant == tenant, agent_accounts.c.subject == subject
    )
    return (await session.execute(query)).first()


async def put_agent_account(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert or replace; True when created."""
    existing = await get_agent_account(session, values["tenant"], values["subject"])
    if existing is None:
        await session.execute(agent_accounts.insert().values(**values))
        return True
    await session.execute(
        agent_accounts.update()
        .where(
            agent_accounts.c.tenant == values["tenant"],
            agent_accounts.c.subject == values["subject"],
        )
        .values(**values)
    )
    return False


async def insert_api_client(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(api_clients.insert().values(**values))


async def get_api_client(session: AsyncSession, client_id: str, for_update: bool = False) -> Any:
    query = sa.select(api_clients).where(api_clients.c.client_id == client_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).first()


async def update_api_client(session: AsyncSession, client_id: str, values: dict[str, Any]) -> None:
    await session.execute(
        api_clients.update().where(api_clients.c.client_id == client_id).values(**values)
    )


async def service_codes(session: AsyncSession, tenant: str) -> list[str]:
    query = sa.select(services.c.code).where(services.c.tenant == tenant).order_by(services.c.code)
    return list((await session.scalars(query)).all())


async def insert_mandate(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(mandates.insert().values(**values))


async def get_mandate(session: AsyncSession, mandate_id: uuid.UUID) -> Any:
    return (await session.execute(sa.select(mandates).where(mandates.c.id == mandate_id))).first()


async def revoke_mandate(session: AsyncSession, mandate_id: uuid.UUID, at: datetime) -> None:
    await session.execute(
        mandates.update().where(mandates.c.id == mandate_id).values(revoked_at=at)
    )
