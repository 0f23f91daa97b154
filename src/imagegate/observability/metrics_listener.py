"""``IMAGEGATE_METRICS_BIND``: GET /metrics, unauthenticated, on a listener of its own.

For a scraper on a private network (or a sidecar on loopback) that holds no admin key; the
main port's /metrics stays admin-only. It is a few lines of asyncio on the process's own event
loop rather than prometheus_client's ``start_http_server`` thread, so the gauges read when
scraped (queue depths, breaker states) are read on the loop that changes them. One request per
connection, nothing but GET or HEAD of /metrics: nothing else to attack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from imagegate.errors import ConfigurationError
from imagegate.observability.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT_SECONDS = 10.0


def _response(status: str, body: bytes, content_type: str, *, head: bool = False) -> bytes:
    lines = [
        f"HTTP/1.1 {status}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else body)


def _answer(metrics: Metrics, head: bytes) -> bytes:
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return _response("400 Bad Request", b"bad request\n", "text/plain")
    method, target, _ = parts
    if target.split("?", 1)[0] != "/metrics":
        return _response("404 Not Found", b"not found: this listener serves /metrics\n",
                         "text/plain")  # fmt: skip
    if method not in ("GET", "HEAD"):
        return _response("405 Method Not Allowed", b"method not allowed\n", "text/plain")
    return _response("200 OK", metrics.exposition(), CONTENT_TYPE, head=method == "HEAD")


async def _serve_one(
    metrics: Metrics, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_SECONDS)
        except asyncio.LimitOverrunError:
            writer.write(_response("431 Request Header Fields Too Large", b"", "text/plain"))
        else:
            writer.write(_answer(metrics, head))
        await writer.drain()
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        pass  # the client went away or never finished its request
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@asynccontextmanager
async def metrics_listener(
    metrics: Metrics, address: tuple[str, int] | None
) -> AsyncIterator[None]:
    """Serve ``metrics`` at ``http://HOST:PORT/metrics`` while the block runs; nothing when
    ``address`` is None."""
    if address is None:
        yield
        return
    host, port = address

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_one(metrics, reader, writer)

    try:
        server = await asyncio.start_server(handle, host, port, limit=MAX_HEAD_BYTES)
    except OSError as exc:
        raise ConfigurationError(
            f"IMAGEGATE_METRICS_BIND={host}:{port}: cannot listen there ({exc.strerror or exc}). "
            "Fix: choose a free address, or a different one for each process on this machine",
            param="IMAGEGATE_METRICS_BIND",
        ) from exc
    log.info("metrics on http://%s:%d/metrics (no authentication)", host, port)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
