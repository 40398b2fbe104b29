"""The journal of agents' reads of personal files (R21), kept by the service holding the file.

Written in the reading transaction, so a read the journal lacks did not happen;
readable by the tenant's data-protection officer at `/v1/access-log`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_plumbing.auth import Kind, Principal, Role, allow
from guichet_plumbing.db import Database
from guichet_plumbing.jsonbody import JsonRoute
from guichet_plumbing.problems import problem_responses
from guichet_plumbing.tables import access_log

DPO_ONLY = allow("dpo", roles=[Role.dpo])


async def record_read(
    session: AsyncSession,
    principal: Principal,
    *,
    tenant: str,
    file: str,
    service: str | None,
    purpose: str,
    now: datetime | None = None,
) -> None:
    """Trace an agent's (or aidant's) read of a personal file; citizens reading theirs are not."""
    if principal.kind not in (Kind.agent, Kind.client) and principal.acting_for is None:
        return
    await session.execute(
        sa.insert(access_log).values(
            at=now or datetime.now(UTC),
            tenant=tenant,
            actor=f"{principal.kind}:{principal.subject}",
            roles=",".join(sorted(principal.roles)),
            acting_for=principal.acting_for,
            file=file,
            service=service,
            purpose=purpose,
        )
    )


class AccessEntry(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="Qui a lu (agent:<identifiant>, client:<identifiant>).")
    roles: list[str]
    acting_for: str | None = Field(description="Usager pour lequel un aidant agissait (R25).")
    file: str = Field(description="Dossier lu (identifiant de la demande).")
    service: str | None
    purpose: str = Field(description="Pour quoi faire (finalité de la lecture).")


class AccessPage(BaseModel):
    items: list[AccessEntry]
    next_cursor: int | None = Field(description="À passer en `before` pour la page suivante.")


async def page(
    db: Database, tenant: str, *, file: str | None, before: int | None, limit: int
) -> AccessPage:
    query = sa.select(access_log).where(access_log.c.tenant == tenant)
    if file is not None:
        query = query.where(access_log.c.file == file)
    if before is not None:
        query = query.where(access_log.c.id < before)
    query = query.order_by(access_log.c.id.desc()).limit(limit + 1)
    async with db.sessions() as session:
        rows = (await session.execute(query)).all()
    items = [
        AccessEntry(
            id=r.id,
            at=r.at,
            actor=r.actor,
            roles=[x for x in r.roles.split(",") if x],
            acting_for=r.acting_for,
            file=r.file,
            service=r.service,
            purpose=r.purpose,
        )
        for r in rows[:limit]
    ]
    return AccessPage(items=items, next_cursor=items[-1].id if len(rows) > limit else None)


def access_log_router(db: Database) -> APIRouter:
    router = APIRouter(tags=["journal des accès"], route_class=JsonRoute)

    @router.get(
        "/v1/access-log",
        response_model=AccessPage,
        summary="Qui a lu quel dossier, quand, et pour quoi faire (délégué à la protection "
        "des données, R21)",
        dependencies=[DPO_ONLY],
        responses=problem_responses(422),
        operation_id="list_access_log",
    )
    async def list_access_log(
        tenant: Annotated[
            str, Query(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="Collectivité.")
        ],
        file: Annotated[
            str | None, Query(max_length=128, description="Un seul dossier (identifiant).")
        ] = None,
        # A cursor is a row number: beyond a 64-bit integer, no database column holds it.
        before: Annotated[
            int | None, Query(ge=1, le=2**63 - 1, description="Curseur (`next_cursor`).")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=200, description="Taille de page.")] = 50,
    ) -> AccessPage:
        return await page(db, tenant, file=file, before=before, limit=limit)

    return router
