"""Request bodies read as JSON, refusing what no store downstream can keep.

Python's JSON reader accepts two things that are not JSON: NaN and the infinities
(written, or read from a number too large for a float, `1e400`), which PostgreSQL's
`json` refuses, and an escaped lone surrogate (`"\\ud800"`), a string that UTF-8, hence
PostgreSQL, SQLite and Kafka, cannot carry. Accepted, either failed at the first write
with a server error. Here both are malformed JSON like any other (400, in French), on
every route (`JsonRoute`) and lane (`lane.read_json`) alike, as is an integer too long
for Python to read.
"""

from __future__ import annotations

import json
import math
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


# What `loads` refuses beyond JSON syntax: the error messages `problems` answers by.
LONE_SURROGATE = "Unpaired UTF-16 surrogate"
NOT_A_NUMBER = "NaN and Infinity are not JSON numbers"
NOT_UNICODE = "Not valid UTF-8 (or UTF-16/32) text"
TOO_DEEP = "Nested too deep"
TOO_LONG_NUMBER = "Integer with too many digits"


# Far beyond any form, and below what the writers downstream take: orjson gives up past
# 255 levels and the events' reader before 200, so a body nested deeper was stored, then
# either failed the write or left an event no consumer could read.
MAX_DEPTH = 64


class _NotANumber(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotANumber(name)


def _finite(text: str) -> float:
    # `1e400` reads as infinity, which every writer downstream turns into null or refuses.
    value = float(text)
    if math.isinf(value):
        raise _NotANumber(text)
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite)


def loads(raw: bytes) -> Any:
    """`json.loads`, raising `json.JSONDecodeError` for any body it cannot take as JSON:
    bad syntax, bad encoding, nesting past `MAX_DEPTH`, NaN, Infinity and -Infinity, and
    a lone surrogate in any string."""
    # `json.loads(raw)` with one decoder made once, and strict decoding where it passes
    # surrogates through: the three bytes of one are not UTF-8 either.
    try:
        text = raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(NOT_UNICODE, raw.decode("utf-8", "replace"), exc.start) from None
    try:
        value = _DECODER.decode(text)
    except _NotANumber:
        # The reader does not say where: the message names the values instead.
        raise json.JSONDecodeError(NOT_A_NUMBER, text, 0) from None
    except RecursionError:
        raise json.JSONDecodeError(TOO_DEEP, text, 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError:
        # An integer past Python's 4,300 digits: no one writes such a number by hand.
        raise json.JSONDecodeError(TOO_LONG_NUMBER, text, 0) from None
    # No deeper than its count of brackets: most bodies need no walk at all.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise json.JSONDecodeError(TOO_DEEP, text, 0)
    if b"\\ud" not in raw and b"\\uD" not in raw:  # every surrogate escape starts so
        return value
    found = _LONE_SURROGATE.search(raw)
    if found is not None and not _encodable(value):
        text = raw.decode("utf-8", "replace")
        raise json.JSONDecodeError(LONE_SURROGATE, text, found.start())
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` levels (the top one is level 1)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


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
