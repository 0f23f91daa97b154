"""Gives every request an id (the client's ``X-Request-Id`` if sane) and echoes it back.

A plain ASGI middleware: Starlette's BaseHTTPMiddleware costs a task per request on the hot path.
"""

from __future__ import annotations

import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.observability.logging import request_id_var

HEADER = b"x-request-id"
_SANE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = next((v for k, v in scope["headers"] if k == HEADER and _SANE.match(v)), None)
        if request_id is None:
            request_id = os.urandom(16).hex().encode()
        scope.setdefault("state", {})["request_id"] = text = request_id.decode()
        request_id_var.set(text)  # every log line of this request carries it

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (HEADER, request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)
