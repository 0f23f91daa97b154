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

_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
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
    present = set()
    html = False
    for name, value in headers:
        lowered = name.lower()
        present.add(lowered)
        if lowered == b"content-type" and value.lower().startswith(b"text/html"):
            html = True
    headers.extend(pair for pair in _ALWAYS if pair[0] not in present)
    if not html and _CSP not in present:
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
