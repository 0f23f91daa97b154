"""One suite for every CacheTier: the memory LRU and the Redis tier (real Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import ConnectionPool

from imagegate.cache.base import CacheTier
from imagegate.cache.memory import MemoryCache
from imagegate.models import CachedResult, StoredImage

SCOPE = "*"
KEY = "a" * 64


def _result(generation_id: str = "gen-1", *, expires_in: float | None = 3600) -> CachedResult:
    expires_at = None if expires_in is None else datetime.now(UTC) + timedelta(seconds=expires_in)
    images = (
        StoredImage("f" * 64, "f" * 64 + ".png", "image/png", 1024, 1024, 123_456, None),
        StoredImage(
            "e" * 64, "e" * 64 + ".webp", "image/webp", 640, 480, 9_876, "a fox, «revised»"
        ),
    )
    return CachedResult(generation_id, images, 40_000, expires_at)


async def _served(tier: CacheTier) -> str | None:
    """Which generation answers ``KEY`` now, if any."""
    found = await tier.get(SCOPE, KEY)
    return None if found is None else found.generation_id


@pytest.fixture
def memory_tier() -> CacheTier:
    return MemoryCache(max_entries=100, seconds=60)


@pytest.fixture
async def redis_tier(redis_pool: ConnectionPool, redis_prefix: str) -> AsyncIterator[CacheTier]:
    from imagegate.cache.redis import RedisCache

    redis_cache = RedisCache(redis_pool, prefix=redis_prefix, max_seconds=3600)
    yield redis_cache
    await redis_cache.aclose()


@pytest.fixture(params=["memory", "redis"])
def tier(request: pytest.FixtureRequest) -> CacheTier:
    found: CacheTier = request.getfixturevalue(f"{request.param}_tier")
    return found


async def test_an_entry_comes_back_exactly_as_put(tier: CacheTier) -> None:
    for result in (_result(), _result("gen-forever", expires_in=None)):
        await tier.put(SCOPE, result.generation_id, result)
        assert await tier.get(SCOPE, result.generation_id) == result


async def test_an_unknown_key_is_a_miss(tier: CacheTier) -> None:
    assert await tier.get(SCOPE, KEY) is None


async def test_scopes_and_keys_are_separate(tier: CacheTier) -> None:
    entry = _result("for-a")
    await tier.put("user-a", KEY, entry)
    assert await tier.get("user-b", KEY) is None
    assert await tier.get("user-a", "b" * 64) is None
    assert await tier.get("user-a", KEY) == entry


async def test_put_replaces_an_entry_and_add_never_does(tier: CacheTier) -> None:
    await tier.add(SCOPE, KEY, _result("first"))
    await tier.add(SCOPE, KEY, _result("copied-from-sql"))
    assert await _served(tier) == "first"
    await tier.put(SCOPE, KEY, _result("refreshed"))
    assert await _served(tier) == "refreshed"


async def test_an_expired_entry_is_never_served_or_stored(tier: CacheTier) -> None:
    await tier.put(SCOPE, KEY, _result("stale", expires_in=-1))
    assert await tier.get(SCOPE, KEY) is None
    await tier.add(SCOPE, KEY, _result("fresh"))  # the stale one did not take the place
    assert await _served(tier) == "fresh"


async def test_an_entry_stops_being_served_when_it_expires(tier: CacheTier) -> None:
    await tier.put(SCOPE, KEY, _result("short", expires_in=0.4))
    assert await tier.get(SCOPE, KEY) is not None
    await asyncio.sleep(0.5)
    assert await tier.get(SCOPE, KEY) is None
    await tier.add(SCOPE, KEY, _result("next"))  # an expired entry does not block add
    assert await _served(tier) == "next"
