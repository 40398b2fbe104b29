"""The bare baseline for `intake_post.py`: one route, one durable INSERT, nothing else.

It answers what the same uvicorn, the same PostgreSQL and the same client cost
on their own, so intake's figures can be read as a ratio to it. Run with
`python -m uvicorn --app-dir bench baseline_app:app` and
`BENCH_BASELINE_DATABASE_URL=postgresql://...`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

# Same shape as a stored request reduced to its minimum: key, timestamp, document.
SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id uuid PRIMARY KEY,
    received_at timestamptz NOT NULL,
    body jsonb NOT NULL
)
"""
INSERT = "INSERT INTO requests (id, received_at, body) VALUES ($1, $2, $3)"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Ten connections, like the service's pool size; synchronous_commit stays at its
    # default (on), so every INSERT waits for its WAL flush as intake's commits do.
    pool = await asyncpg.create_pool(
        os.environ["BENCH_BASELINE_DATABASE_URL"], min_size=10, max_size=10
    )
    await pool.execute(SCHEMA)
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/v1/requests", status_code=201)
async def create_request(request: Request) -> JSONResponse:
    body = await request.body()
    request_id = uuid.uuid4()
    pool: asyncpg.Pool = request.app.state.pool
    try:
        # PostgreSQL parses the jsonb: malformed input is refused, not stored.
        await pool.execute(INSERT, request_id, datetime.now(UTC), body.decode())
    except (UnicodeDecodeError, asyncpg.DataError):
        return JSONResponse({"detail": "invalid JSON"}, status_code=400)
    return JSONResponse({"id": str(request_id)}, status_code=201)
