"""The whole system in one process: four apps under their prefixes, one in-process bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from guichet_launcher.services import SERVICES
from guichet_plumbing.bus import InProcessBus


def create_embedded_app(data_dir: Path | None = None, **overrides: object) -> Starlette:
    """`overrides` are passed to every service's settings (e.g. smtp_url in tests)."""
    bus = InProcessBus()
    extra: dict[str, object] = dict(overrides)
    if data_dir is not None:
        extra["data_dir"] = data_dir
    apps = []
    for spec in SERVICES:
        fields = spec.settings.model_fields
        app = spec.create(bus, **{k: v for k, v in extra.items() if k in fields})
        apps.append((spec, app))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Starlette does not run mounted apps' lifespans: enter each one here.
        async with AsyncExitStack() as stack:
            for _spec, app in apps:
                await stack.enter_async_context(app.router.lifespan_context(app))
            yield

    async def index(_request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "name": "Guichet",
                "services": {
                    spec.name: {
                        "prefix": spec.prefix,
                        "openapi": f"{spec.prefix}/openapi.json",
                        "docs": f"{spec.prefix}/docs",
                    }
                    for spec, _ in apps
                },
            }
        )

    routes: list[Route | Mount] = [Route("/", index)]
    routes += [Mount(spec.prefix, app=app) for spec, app in apps]
    return Starlette(routes=routes, lifespan=lifespan)
