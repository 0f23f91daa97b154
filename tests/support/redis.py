"""The Redis the suites share (IMAGEGATE_TEST_REDIS_URL): each test keeps to its own key prefix
and deletes only its own keys, so runs and parallel tests never collide."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis


def unique_prefix() -> str:
    return f"imagegate-test-{uuid.uuid4().hex[:12]}"


async def ping(url: str) -> None:
    """Raises ``redis.RedisError`` when nothing answers at ``url``."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def keys_with_prefix(url: str, prefix: str) -> list[bytes]:
    client = aioredis.Redis.from_url(url)
    try:
        return sorted([key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)])
    finally:
        await client.aclose()


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete the keys under ``prefix`` (and nothing else: never FLUSHDB a shared server)."""
    keys = await keys_with_prefix(url, prefix)
    client = aioredis.Redis.from_url(url)
    try:
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
