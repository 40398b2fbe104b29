"""Request bodies read as JSON, refusing what no store downstream can keep.

Python's JSON reader accepts an escaped lone surrogate (`"\\ud800"`): a string that
UTF-8, hence PostgreSQL, SQLite and Kafka, cannot carry. Accepted, it failed at the
first write with a server error. Here it is malformed JSON like any other (400, the
French detail giving its byte offset), on every route (`JsonRoute`) and lane
(`lane.read_json`) alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

# An escaped high surrogate not followed by a low one, or a low one not preceded by a
# high one. A hit is confirmed on the decoded value: after an escaped backslash it is text.
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


LONE_SURROGATE = "Unpaired UTF-16 surrogate"


def loads(raw: bytes) -> Any:
    """`json.loads`, raising `json.JSONDecodeError` on a lone surrogate in any string."""
    value = json.loads(raw)
    if b"\\ud" not in raw and b"\\uD" not in raw:  # every surrogate escape starts so
        return value
    found = _LONE_SURROGATE.search(raw)
    if found is not None and not _encodable(value):
        text = raw.decode("utf-8", "replace")
        raise json.JSONDecodeError(LONE_SURROGATE, text, found.start())
    return value


def _encodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    return True


class _JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """A FastAPI route whose JSON body is read by `loads`: every service's routers use it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_json_body(request: Request) -> Response:
            return await handler(_JsonRequest(request.scope, request.receive))

        return with_json_body
