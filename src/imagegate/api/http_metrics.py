"""Times every HTTP request into ``Metrics``, labelled by route template, not raw path.

A plain ASGI middleware like ``request_id``: BaseHTTPMiddleware would cost a task per request.
The route template is read after the app ran: FastAPI puts the matched route in the scope.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.container import Services


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            services: Services | None = getattr(scope["app"].state, "services", None)
            if services is not None:  # the services are built when the app starts
                route = scope.get("route")
                template = getattr(route, "path_format", None) or "unmatched"
                services.metrics.observe_http(
                    template, scope["method"], status, time.perf_counter() - started
                )
