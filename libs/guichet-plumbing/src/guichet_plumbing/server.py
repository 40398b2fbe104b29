"""How every service is served: uvicorn's httptools protocol, with a bound on headers.

httptools sets no limit on a request's line and headers: a single anonymous request with
a header of 100 MB held the event loop for seconds (each chunk parsed again into an ever
longer value) and grew the process by hundreds of MB. Past `MAX_HEAD` bytes before the
headers end, the connection is answered 431 and closed. h11, uvicorn's other parser,
stops at 16 KiB; this bound leaves room for long cookies and bearer tokens.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from guichet_plumbing.problems import TYPE_BASE

MAX_HEAD = 64 * 1024
_LINGER = 1.0  # seconds

_REFUSAL = json.dumps(
    {
        "type": f"{TYPE_BASE}headers-too-large",
        "title": "En-têtes trop volumineux",
        "status": 431,
        "detail": f"Les en-têtes de la requête dépassent {MAX_HEAD // 1024} Kio : "
        "réduisez-les (cookies, jetons) puis renvoyez la requête.",
    },
    ensure_ascii=False,
).encode()


class BoundedHead(HttpToolsProtocol):
    """`uvicorn.run(..., http=BoundedHead)`.

    Two counts: the bytes read while a head is open (a head that never ends is refused
    before it is parsed much further), and the head's own length as parsed (a head read
    whole in one chunk, or after a previous request's end, is judged when it ends)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # from the connection's start, then after each message
        self._read = 0
        self._parsed = 0
        self._too_long = False  # judged at the end of its head: no request is made of it
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped, unparsed, until the connection closes
        if self._in_head:
            self._read += len(data)
        super().data_received(data)
        if self._too_long or (self._in_head and self._read > MAX_HEAD):
            self._refuse()

    def _refuse(self) -> None:
        self._refused = True
        if self.transport.is_closing():
            return
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not cycle.response_complete:
            # A request sent before it on this connection (pipelined) is still being
            # answered: that answer goes first, then the connection closes.
            cycle.keep_alive = False
            return
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/problem+json\r\n"
            b"content-length: " + str(len(_REFUSAL)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + _REFUSAL
        )
        # Closed at once with the rest of the head unread, the connection would be reset
        # and the client might never read the answer: what it still sends is dropped for
        # a moment first (a lingering close, as nginx does).
        asyncio.get_running_loop().call_later(_LINGER, self.transport.close)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed = 0

    def on_url(self, url: bytes) -> None:
        self._parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value) + 4  # ": " and the line's end
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._read = 0
        if self._parsed > MAX_HEAD:
            self._too_long = True
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._too_long:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True  # what follows on this connection is the next request's head
        if not self._too_long:
            super().on_message_complete()
