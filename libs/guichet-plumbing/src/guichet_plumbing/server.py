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
    """`uvicorn.run(..., http=BoundedHead)`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped, unparsed, until the connection closes
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Counted before parsing, judged after: a chunk that ends the headers and carries
        # a body is no long head.
        if self._in_head and self._head_bytes > MAX_HEAD and not self.transport.is_closing():
            self._refused = True
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: application/problem+json\r\n"
                b"content-length: " + str(len(_REFUSAL)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + _REFUSAL
            )
            # Closed at once with the rest of the head unread, the connection would be
            # reset and the client might never read the answer: what it still sends is
            # dropped for a moment first (a lingering close, as nginx does).
            asyncio.get_running_loop().call_later(_LINGER, self.transport.close)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        # What the same chunk carries after the headers (a body, a pipelined request)
        # counts for nothing.
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()
