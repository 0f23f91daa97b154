"""Fixtures shared by the provider adapter tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from imagegate.providers.http import UpstreamClient, new_client


@pytest.fixture
async def http_client() -> AsyncIterator[UpstreamClient]:
    """The shared upstream pool, as the container builds it."""
    async with new_client() as client:
        yield client
