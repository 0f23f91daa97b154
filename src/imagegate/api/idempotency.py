"""``Idempotency-Key`` on POSTs: a retried request is answered with the first response.

A plain ASGI middleware, like ``request_id.py``: every request without the header passes straight
through. With it, the body is buffered (it is part of what makes two requests the same), the
caller is authenticated (keys belong to users), and the downstream app's response is captured
whole, stored and replayed by ``IdempotencyService``. Nothing is sent until the response is
complete, which is fine: these routes do not stream.
"""

from __future__ import annotations

import math

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.api.errors import error_response
from imagegate.container import Services
from imagegate.errors import ImagegateError
from imagegate.services.idempotency import StoredResponse, fingerprint_of

HEADER = b"idempotency-key"
AUTHORIZATION = b"authorization"


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        key = _header(scope, HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client left before sending its request
            return
        services: Services = scope["app"].state.services
        try:
            principal = await services.keys.authenticate(_header(scope, AUTHORIZATION))
        except ImagegateError:  # the route refuses it as usual (401)
            await self.app(scope, _replaying(body, receive), send)
            return

        async def produce() -> StoredResponse:
            captured = _CapturedResponse()
            await self.app(scope, _replaying(body, receive), captured)
            return captured.stored()

        path = scope["path"]
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode("latin-1")
        try:
            response = await services.idempotency.run(
                principal, key, fingerprint_of(scope["method"], path, body), produce
            )
        except ImagegateError as exc:
            await _refusal(exc)(scope, receive, send)
            return
        await _send_stored(response, send)


class _CapturedResponse:
    """An ASGI ``send`` that keeps the response instead of sending it."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: tuple[tuple[str, str], ...] = ()
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = tuple(
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", ())
            )
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    def stored(self) -> StoredResponse:
        if self.status is None:
            raise RuntimeError("the application returned without starting a response")
        return StoredResponse(self.status, self.headers, b"".join(self.chunks))


async def _send_stored(response: StoredResponse, send: Send) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def _refusal(exc: ImagegateError) -> Response:
    """The service's refusals (key reused, still in use, malformed) in OpenAI's error shape."""
    headers = None
    if exc.retry_after is not None:
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return error_response(
        exc.status, exc.message, type=exc.type, code=exc.code, param=exc.param, headers=headers
    )


def _header(scope: Scope, name: bytes) -> str | None:
    value = next((v for k, v in scope["headers"] if k == name), None)
    return None if value is None else str(value.decode("latin-1"))


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the buffered body to the app once, then listens to the client."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
