"""A bound on the size of a request's head (request line and headers), enforced by the HTTP
protocol itself, before a request reaches the app.

uvicorn's httptools protocol keeps whatever headers a client sends, with no limit (a 200 KB
header was accepted). ``BoundedHttpToolsProtocol`` counts the bytes of each request's head as
they arrive: a head over ``max_header_bytes`` (``IMAGEGATE_REQUESTS__MAX_HEADER_BYTES``) gets
a 431 in the OpenAI error shape and the connection is closed. A head is counted both as it
streams in (one huge header that never ends still stops at the limit plus one read) and as
parsed headers, so no app code ever sees an oversized head.
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEADER_BYTES = 32 * 1024
LINGER_SECONDS = 2.0
"""How long a refused connection's further bytes are read and dropped before it is closed."""


class _HeadTooLarge(Exception):
    pass


def too_large_response(limit: int) -> bytes:
    """The whole HTTP/1.1 431 response, written straight to the transport."""
    body = orjson.dumps(
        {
            "error": {
                "message": f"The request's headers are larger than the limit of {limit} bytes "
                "(IMAGEGATE_REQUESTS__MAX_HEADER_BYTES).",
                "type": "invalid_request_error",
                "param": None,
                "code": "request_headers_too_large",
            }
        }
    )
    head = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"x-content-type-options: nosniff\r\n"
        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
        b"connection: close\r\n\r\n"
    )
    return head + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a limit on each request's head."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False
        self._head_bytes = 0
        self._parsed_bytes = 0
        self._refused = False

    @classmethod
    def with_limit(cls, max_header_bytes: int) -> type[BoundedHttpToolsProtocol]:
        return type(cls.__name__, (cls,), {"max_header_bytes": max_header_bytes})

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._refused or not self._in_head:
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_header_bytes:
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._parsed_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._parsed_bytes += size
        if self._parsed_bytes > self.max_header_bytes:
            self._refused = True
            raise _HeadTooLarge  # httptools stops parsing; send_400_response answers 431

    def send_400_response(self, msg: str) -> None:
        if self._refused:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._refused = True
        if self.transport.is_closing():
            return
        self.logger.warning("Request headers over %d bytes refused (431).", self.max_header_bytes)
        self.transport.write(too_large_response(self.max_header_bytes))
        # Closing now, with the rest of the head unread, would make the kernel answer with a
        # reset that can destroy the 431 before the client reads it. Half-close instead, drop
        # whatever else arrives, and close for good at the client's EOF or after a moment.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()
