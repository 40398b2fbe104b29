"""Hot routes served without FastAPI's per-request machinery, with the same answers.

FastAPI wraps every request in several layers and solves the route's dependencies
anew each time; on intake's submission that was about a fifth of the server's CPU.
A lane keeps the route declared in FastAPI (its OpenAPI, its access policy, the
access-matrix test), but serves its requests from a plain handler that reads the
parameters as FastAPI does (same order, same errors), runs the same policy and the
same service code, and renders errors through the app's own exception handlers.
`GUICHET_FAST_LANES=false` turns lanes off; `tests/plumbing/test_lane.py` checks
that both ways answer alike.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from guichet_plumbing.jsonbody import loads
from guichet_plumbing.problems import route_path

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Response]]
ExceptionHandler = Callable[[Request, Exception], Response | Awaitable[Response]]

# An empty body: FastAPI then reports the body parameter as missing.
MISSING: Any = object()


@dataclass(frozen=True)
class Lane:
    method: str
    path: str  # as declared on the router
    handler: Handler


class Lanes:
    """ASGI middleware: a request for a lane goes to its handler, any other to the app."""

    def __init__(
        self,
        app: ASGIApp,
        lanes: dict[tuple[str, str], tuple[Lane, Any]],
        handlers: Mapping[Any, ExceptionHandler],
    ) -> None:
        """`lanes`: (method, path) → the lane and its FastAPI route (metrics label by it);
        `handlers`: the app's exception handlers, so errors read exactly as elsewhere."""
        self.app = app
        self.lanes = lanes
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self.lanes.get((scope["method"], route_path(scope)))
            if found is not None:
                lane, route = found
                scope["route"] = route
                request = Request(scope, receive, send)
                try:
                    response = await lane.handler(request)
                except Exception as exc:
                    handler = self._handler(exc)
                    if handler is None:
                        raise  # the server-error handler answers, as for any route
                    answer = handler(request, exc)
                    response = await answer if inspect.isawaitable(answer) else answer
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _handler(self, exc: Exception) -> ExceptionHandler | None:
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            if cls in self.handlers:
                return self.handlers[cls]
        return None


async def read_json(request: Request) -> Any:
    """The body as FastAPI decodes it before validating: JSON when the type says so,
    the raw bytes otherwise (refused by validation), `MISSING` when empty."""
    raw = await request.body()
    if not raw:
        return MISSING
    content_type = request.headers.get("content-type", "")
    kind, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        return raw
    try:
        return loads(raw)
    except json.JSONDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error]) from None
    except Exception:  # whatever else a reader may raise: as FastAPI answers
        raise HTTPException(400, "There was an error parsing the body") from None


@dataclass
class Params:
    """A lane's parameters, validated as FastAPI does, their errors raised together."""

    errors: list[dict[str, Any]] = field(default_factory=list)

    def header(self, request: Request, alias: str, max_length: int) -> str | None:
        value = request.headers.get(alias)
        if value is not None and len(value) > max_length:
            self.errors.append(
                {
                    "type": "string_too_long",
                    "loc": ("header", alias),
                    "msg": f"String should have at most {max_length} characters",
                    "input": value,
                    "ctx": {"max_length": max_length},
                }
            )
        return value

    def body(self, model: type[M], data: Any) -> M | None:
        if data is MISSING:
            self.errors.append(
                {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
            )
            return None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            self.errors += [
                {**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)
            ]
            return None

    def check(self) -> None:
        if self.errors:
            raise RequestValidationError(self.errors)
