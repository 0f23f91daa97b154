"""Requests per minute on the image routes, and the ``x-ratelimit-*-requests`` headers.

``AdmittedPrincipal`` authenticates, counts the request against its key's window (see
``services/traffic.py`` for why requests are counted here and images and concurrency in the
service) and keeps the window's state on ``request.state``. ``RateLimitHeadersMiddleware``
then adds OpenAI's headers to whatever response leaves, a 200 or an error such as the 429
itself. A plain ASGI middleware: it costs one dict lookup on responses of other routes.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.api.deps import CurrentPrincipal, ServicesDep
from imagegate.models import Principal
from imagegate.services.traffic import WindowState

STATE_KEY = "requests_window"


async def admitted_principal(
    request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> Principal:
    state = await services.traffic.count_request(principal)
    if state is not None:
        request.scope.setdefault("state", {})[STATE_KEY] = state
        services.traffic.refuse_if_over(state)
    return principal


AdmittedPrincipal = Annotated[Principal, Depends(admitted_principal)]


def format_reset(seconds: float) -> str:
    """A duration in OpenAI's style: ``850ms``, ``12s``, ``1m0s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def _headers(state: WindowState) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-ratelimit-limit-requests", str(state.limit).encode()),
        (b"x-ratelimit-remaining-requests", str(state.remaining).encode()),
        (b"x-ratelimit-reset-requests", format_reset(state.reset_seconds).encode()),
    ]


class RateLimitHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                state = scope.get("state", {}).get(STATE_KEY)
                if state is not None:
                    message["headers"] = [*message.get("headers", ()), *_headers(state)]
            await send(message)

        await self.app(scope, receive, send_with_limits)
