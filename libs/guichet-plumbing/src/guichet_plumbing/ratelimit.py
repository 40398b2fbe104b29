"""Rate limits on writes, per client (the token's subject) or per source address.

Counted in each process's memory (a moving window): with N replicas a client gets up
to N times the limit, which still stops a runaway script; R9 deals with abusive senders.
"""

from __future__ import annotations

import math
import time

import limits
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from guichet_plumbing.problems import Problem

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class WriteLimiter:
    def __init__(self, spec: str | None) -> None:
        """`spec` like "120/minute" (the `limits` notation); empty or None: no limit."""
        self.item = limits.parse(spec) if spec else None
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def check(self, key: str) -> None:
        if self.item is None or await self.limiter.hit(self.item, key):
            return
        stats = await self.limiter.get_window_stats(self.item, key)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        raise Problem(
            429,
            "too-many-requests",
            "Trop de requêtes",
            f"Trop d'envois en peu de temps depuis ce client ou cette adresse. Réessayez dans "
            f"{retry} seconde(s).",
            headers={"Retry-After": str(retry)},
        )
