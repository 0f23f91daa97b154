"""``create_app``: the FastAPI application, built from services or from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from imagegate import __version__
from imagegate.api.body_limit import BodyLimitMiddleware
from imagegate.api.errors import install_error_handlers
from imagegate.api.http_metrics import HttpMetricsMiddleware
from imagegate.api.idempotency import IdempotencyMiddleware
from imagegate.api.json_depth import JsonDepthMiddleware
from imagegate.api.openapi import install_openapi
from imagegate.api.rate_limits import RateLimitHeadersMiddleware
from imagegate.api.request_id import RequestIdMiddleware
from imagegate.api.routes import (
    admin,
    files,
    health,
    images,
    jobs,
    maintenance,
    metrics,
    models,
    openai_images,
    usage,
)
from imagegate.api.security_headers import SecurityHeadersMiddleware, install_cors
from imagegate.container import Services, build_services
from imagegate.observability.metrics_listener import metrics_listener
from imagegate.queue.worker import embedded_workers
from imagegate.settings import Settings
from imagegate.web import install_web


def create_app(services: Services | None = None, *, settings: Settings | None = None) -> FastAPI:
    """An app over ready ``services`` (tests, embedding), or one that builds its own from
    ``settings`` when it starts and closes them when it stops (``imagegate serve``)."""
    if (services is None) == (settings is None):
        raise TypeError("pass exactly one of services or settings")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            yield
            return
        assert settings is not None
        async with build_services(settings) as built:
            app.state.services = built
            async with (
                metrics_listener(built.metrics, settings.metrics_address),
                embedded_workers(built),
            ):
                yield

    app = FastAPI(
        title="imagegate",
        version=__version__,
        summary="One OpenAI-compatible API in front of every image model.",
        lifespan=lifespan,
    )
    if services is not None:
        app.state.services = services
    install_error_handlers(app)
    app.add_middleware(IdempotencyMiddleware)  # added first = inside: replays get their own id
    app.add_middleware(RateLimitHeadersMiddleware)  # outside replays: no stale counts
    configured = services.settings if services is not None else settings
    assert configured is not None
    app.add_middleware(JsonDepthMiddleware, max_depth=configured.requests.max_json_depth)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(HttpMetricsMiddleware)  # times everything inside CORS
    app.add_middleware(BodyLimitMiddleware, max_bytes=configured.requests.max_body_bytes)
    install_cors(app, configured.cors)  # outermost: preflights answered before anything else
    for module in (openai_images, images, jobs, models, admin, files, health, usage, metrics):
        app.include_router(module.router)
    app.include_router(maintenance.router)
    web = (services.settings if services is not None else settings).web  # type: ignore[union-attr]
    if web.enabled:
        install_web(app)
    install_openapi(app)
    return app
