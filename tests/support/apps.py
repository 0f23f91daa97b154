"""The app over real services, driven in-process through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from imagegate.api.app import create_app
from imagegate.container import Services, build_services
from imagegate.settings import Settings


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """Services built from ``settings`` and a client of the app over them."""
    async with build_services(settings) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield services, client
