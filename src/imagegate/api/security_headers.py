"""Security headers on every response, and CORS from settings.

A plain ASGI middleware (BaseHTTPMiddleware costs a task per request on the hot path). API
responses are never meant to be rendered or framed, so they get ``default-src 'none'``; HTML
pages set their own Content-Security-Policy (the web UI), which is never overridden, and so does
any response that already carries one of these headers.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.settings import CorsSettings

_NOSNIFF = (b"x-content-type-options", b"nosniff")
_REFERRER = (b"referrer-policy", b"no-referrer")
_CSP = b"content-security-policy"
_API_CSP = b"default-src 'none'; frame-ancestors 'none'"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _secured(list(message.get("headers", ())))
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _secured(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # ASGI header names are lower-case (Starlette writes them so): compared as they are
    has_csp = has_nosniff = has_referrer = False
    for name, value in headers:
        if name == b"content-type":
            has_csp = has_csp or value[:9].lower() == b"text/html"  # pages set their own
        elif name == _CSP:
            has_csp = True
        elif name == _NOSNIFF[0]:
            has_nosniff = True
        elif name == _REFERRER[0]:
            has_referrer = True
    if not has_nosniff:
        headers.append(_NOSNIFF)
    if not has_referrer:
        headers.append(_REFERRER)
    if not has_csp:
        headers.append((_CSP, _API_CSP))
    return headers


def install_cors(app: FastAPI, cors: CorsSettings) -> None:
    """Starlette's CORSMiddleware for the listed origins; nothing at all when none are."""
    if not cors.allow_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=cors.allow_origins,
        allow_methods=cors.allow_methods,
        allow_headers=cors.allow_headers,
        allow_credentials=cors.allow_credentials and "*" not in cors.allow_origins,
        max_age=cors.max_age_seconds,
        expose_headers=["X-Request-Id", "Retry-After", "Location"],
    )
