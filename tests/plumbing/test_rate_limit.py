"""Writes are rate-limited per client and per source: 429 with Retry-After, in French."""

from __future__ import annotations

from pathlib import Path

import httpx

from guichet_intake.app import create_app
from guichet_intake.settings import IntakeSettings
from tests.e2e.flow import REQUEST
from tests.identity import counter
from tests.support import serve


async def test_writes_beyond_the_limit_wait_their_turn(data_dir: Path) -> None:
    app = create_app(IntakeSettings(data_dir=data_dir, write_rate_limit="2/minute"))
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as http:
        for _ in range(2):
            assert (await http.post("/v1/requests", json=REQUEST)).status_code == 201
        refused = await http.post("/v1/requests", json=REQUEST)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "Réessayez dans" in refused.json()["detail"]

        # Another client is counted on its own; reads are not counted.
        desk = counter()
        assert (await http.post("/v1/requests", json=REQUEST, headers=desk)).status_code == 201
        catalogue = await http.get("/v1/procedures", params={"tenant": "admiville"})
        assert catalogue.status_code == 200
