"""The HTTP server every service runs: a request's head is bounded (httptools sets none)."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from guichet_plumbing.server import MAX_HEAD
from tests.support import serve


async def echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


APP = Starlette(routes=[Route("/", echo, methods=["GET", "POST"])])


async def exchange(base: str, request: bytes) -> bytes:
    """`request` written in pieces, as a client on a slow line would; the whole answer."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for start in range(0, len(request), 16 * 1024):
            writer.write(request[start : start + 16 * 1024])
            await writer.drain()
    except ConnectionResetError:
        pass  # refused while still writing
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def request(header: int, body: bytes = b"") -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * header + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )


async def test_a_head_past_the_bound_is_answered_431_in_french_and_closed() -> None:
    async with serve(APP) as base:
        answer = await exchange(base, request(MAX_HEAD + 100_000))
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert b"application/problem+json" in rest
    assert "En-têtes trop volumineux" in rest.decode()


async def test_a_head_within_the_bound_and_a_large_body_are_served() -> None:
    body = b"x" * 500_000  # read in chunks with the end of the head: no long head
    async with serve(APP) as base:
        near = await exchange(base, request(MAX_HEAD - 1_000))
        large = await exchange(base, request(100, body))
    assert near.startswith(b"HTTP/1.1 200 OK")
    assert large.startswith(b"HTTP/1.1 200 OK") and large.endswith(b"500000")
