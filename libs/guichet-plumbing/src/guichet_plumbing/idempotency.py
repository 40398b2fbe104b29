"""`Idempotency-Key` for writes: the stored answer is replayed; a reused key with a new body fails.

The key is saved in the same transaction as the write it guards, so a retry
after a crash either finds the whole write or nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_plumbing.problems import Problem
from guichet_plumbing.tables import idempotency_keys

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: bytes


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Problem(
            400,
            "idempotency-key-invalid",
            "Clé d'idempotence invalide",
            "L'en-tête Idempotency-Key doit contenir entre 1 et 255 caractères imprimables.",
        )
    return key


def own_key(key: str, *caller: str) -> str:
    """The key as stored, under `caller` (its collectivité and identity): one caller's keys
    never meet another's. Front ends of many collectivités on one platform, anonymous
    forms included, may all count their keys from 1; a key seen from another caller is a
    new one, never a conflict, and never replays that caller's answer."""
    return hashlib.sha256("\x1f".join((*caller, key)).encode()).hexdigest()


async def replay(
    session: AsyncSession, scope: str, key: str, body_fingerprint: str
) -> StoredResponse | None:
    row = (
        await session.execute(
            sa.select(
                idempotency_keys.c.fingerprint,
                idempotency_keys.c.status_code,
                idempotency_keys.c.body,
            ).where(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
        )
    ).first()
    if row is None:
        return None
    return stored_answer(row.fingerprint, row.status_code, row.body, body_fingerprint)


def stored_answer(
    fingerprint_stored: str, status_code: int, body: bytes, body_fingerprint: str
) -> StoredResponse:
    """The answer kept under a key, if this body is the one it was kept for."""
    if fingerprint_stored != body_fingerprint:
        raise Problem(
            409,
            "idempotency-key-reused",
            "Clé d'idempotence déjà utilisée",
            "Cette clé Idempotency-Key a déjà servi pour une autre demande. "
            "Utilisez une nouvelle clé pour une nouvelle demande.",
        )
    return StoredResponse(status_code, body)


def record(scope: str, key: str, body_fingerprint: str, response: StoredResponse) -> dict[str, Any]:
    """The `idempotency_keys` row keeping `response`, for `remember` or a one-statement write."""
    return {
        "scope": scope,
        "key": key,
        "fingerprint": body_fingerprint,
        "status_code": response.status_code,
        "body": response.body,
        "created_at": datetime.now(UTC),
    }


async def remember(
    session: AsyncSession, scope: str, key: str, body_fingerprint: str, response: StoredResponse
) -> None:
    await session.execute(
        idempotency_keys.insert().values(**record(scope, key, body_fingerprint, response))
    )
