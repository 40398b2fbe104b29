"""The HTTP server every service runs: a request's head is bounded (httptools sets none)."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from guichet_plumbing.server import MAX_HEAD
from tests.support import serve


async def echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


APP = Starlette(routes=[Route("/", echo, methods=["GET", "POST"])])


async def exchange(base: str, request: bytes, piece: int = 16 * 1024) -> bytes:
    """`request` written in pieces of `piece` bytes; the whole answer."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for start in range(0, len(request), piece):
            writer.write(request[start : start + piece])
            await writer.drain()
    except ConnectionResetError:
        pass  # refused while still writing
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def request(header: int, body: bytes = b"", connection: bytes = b"close") -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * header + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: " + connection + b"\r\n\r\n" + body
    )


@pytest.mark.parametrize(
    ("head", "piece"),
    [
        (MAX_HEAD + 100_000, 16 * 1024),  # a head that goes on and on, read in pieces
        (MAX_HEAD + 6_000, 1024 * 1024),  # written at once: judged when it ends
    ],
    ids=["in-pieces", "at-once"],
)
async def test_a_head_past_the_bound_is_answered_431_in_french_and_closed(
    head: int, piece: int
) -> None:
    async with serve(APP) as base:
        answer = await exchange(base, request(head), piece)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert b"application/problem+json" in rest
    assert "En-têtes trop volumineux" in rest.decode()


async def test_the_next_request_on_a_kept_connection_is_bounded_too() -> None:
    # A first request within bounds, answered, then one whose head is too long.
    async with serve(APP) as base:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request(100, b"ok", connection=b"keep-alive"))
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n2"), 10)
        writer.write(request(MAX_HEAD + 6_000))
        second = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert first.startswith(b"HTTP/1.1 200 OK")
    assert second.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")


async def test_a_too_long_head_pipelined_after_a_request_lets_that_one_be_answered() -> None:
    both = request(100, b"ok", connection=b"keep-alive") + request(MAX_HEAD + 6_000)
    async with serve(APP) as base:
        answer = await exchange(base, both, 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"\r\n\r\n2")
    assert b"connection: close" in answer.lower()


async def test_a_head_within_the_bound_and_a_large_body_are_served() -> None:
    body = b"x" * 500_000  # read in chunks with the end of the head: no long head
    async with serve(APP) as base:
        near = await exchange(base, request(MAX_HEAD - 1_000), 1024 * 1024)
        large = await exchange(base, request(100, body), 1024 * 1024)
    assert near.startswith(b"HTTP/1.1 200 OK")
    assert large.startswith(b"HTTP/1.1 200 OK") and large.endswith(b"500000")
