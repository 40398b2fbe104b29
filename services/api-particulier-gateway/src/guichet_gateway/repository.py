"""Every SQL query of the gateway."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_gateway.models import consultations


@dataclass(frozen=True)
class Position:
    """Where a page stops: the (occurred_at, id) of its last row."""

    occurred_at: datetime
    id: uuid.UUID


class ConsultationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, **values: Any) -> None:
        await self.session.execute(consultations.insert().values(**values))

    async def page(
        self, *, tenant: str, procedure: str | None, after: Position | None, limit: int
    ) -> list[sa.Row[Any]]:
        """Newest first; `id` breaks ties so the order, and so the cursor, is deterministic."""
        c = consultations.c
        query = sa.select(consultations).where(c.tenant == tenant)
        if procedure is not None:
            query = query.where(c.procedure == procedure)
        if after is not None:
            query = query.where(
                sa.or_(
                    c.occurred_at < after.occurred_at,
                    sa.and_(c.occurred_at == after.occurred_at, c.id < after.id),
                )
            )
        query = query.order_by(c.occurred_at.desc(), c.id.desc()).limit(limit)
        return list((await self.session.execute(query)).all())
