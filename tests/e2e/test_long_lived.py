"""The launcher's serving processes: the garbage collector set for a long-lived app."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from starlette.applications import Starlette

from guichet_launcher.services import GC_THRESHOLDS, long_lived


@pytest.fixture
def collector() -> Iterator[None]:
    """The test process's collector as it was, whatever `long_lived` changed."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def scanned(obj: object) -> bool:
    # `gc.get_objects` lists the three generations the collector walks, not frozen objects.
    return any(o is obj for o in gc.get_objects())


@pytest.mark.usefixtures("collector")
async def test_what_startup_builds_leaves_the_collectors_scans_and_requests_do_not() -> None:
    built: list[list[object]] = []

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        built.append([object()])  # a pool, a cache: made at startup, kept until the end
        yield

    app = long_lived(Starlette(lifespan=lifespan))
    assert gc.get_threshold() == GC_THRESHOLDS
    async with app.router.lifespan_context(app):
        assert built and not scanned(built[0])
        served = [object()]  # what a request makes afterwards is collected as usual
        assert scanned(served)
