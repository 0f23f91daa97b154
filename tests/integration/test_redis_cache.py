"""The Redis tier of the exact cache: shared by replicas, refreshed for all, bounded, and failing
open when Redis goes away. Real Redis, real SQLite, a real OpenAI fake."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState
from tests.support.processes import free_port
from tests.support.redis import keys_with_prefix
from tests.support.tcp_proxy import TcpProxy

from imagegate.cache.redis import RedisCache, decode
from imagegate.container import Services, build_services
from imagegate.fingerprint import cache_key, normalize_request
from imagegate.limits.redis import connection_pool
from imagegate.models import CachedResult, GenerationRequest, Principal, StoredImage
from imagegate.services.caching import CacheMode
from imagegate.settings import Settings

REQUEST = GenerationRequest(
    prompt="a lighthouse in fog", model="gpt-image-1", size="1024x1024", quality="low"
)
NO_TRAFFIC_LIMITS = {"requests_per_minute": 0, "images_per_minute": 0, "concurrent_generations": 0}


@pytest.fixture
def upstream() -> Iterator[tuple[FakeState, str]]:
    state = FakeState()
    with FakeServer(build_openai_fake(state)) as server:
        yield state, server.base_url


def _settings(tmp_path: Path, upstream_url: str, redis_url: str | None, **fields: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_url="http://img.test",
        providers={
            "openai": {"kind": "openai", "base_url": f"{upstream_url}/v1", "api_key": "test-key"}
        },
        redis_url=redis_url,
        **fields,
    )


@pytest.fixture
async def replicas(
    tmp_path: Path, upstream: tuple[FakeState, str], redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[Services, Services]]:
    """Two replicas on one SQLite file and one Redis; the second has no memory tier, so what
    it serves comes from Redis or SQL at once."""
    _, url = upstream
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            build_services(_settings(tmp_path, url, redis_url, redis_prefix=redis_prefix))
        )
        second = await stack.enter_async_context(
            build_services(
                _settings(
                    tmp_path,
                    url,
                    redis_url,
                    redis_prefix=redis_prefix,
                    cache={"memory_entries": 0},
                )
            )
        )
        yield first, second


async def _user(services: Services) -> Principal:
    issued = await services.keys.create("alice")
    return await services.keys.authenticate(f"Bearer {issued.secret}")


def _key(services: Services) -> str:
    return cache_key(normalize_request(REQUEST, services.generations.resolve(REQUEST)[0]))


InRedis = Callable[[str], Awaitable[tuple[CachedResult | None, int]]]


@pytest.fixture
def in_redis(redis_url: str, redis_prefix: str) -> InRedis:
    """``await in_redis(key)``: the entry Redis holds for ``key`` (global scope), and its time
    to live in ms."""

    async def read(key: str) -> tuple[CachedResult | None, int]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            name = f"{redis_prefix}:cache:v1:*:{key}"
            raw, ttl_ms = await client.get(name), await client.pttl(name)
        finally:
            await client.aclose()
        return (None if raw is None else decode(raw)), ttl_ms

    return read


async def test_a_replica_serves_what_another_made_with_one_upstream_call(
    replicas: tuple[Services, Services], upstream: tuple[FakeState, str], in_redis: InRedis
) -> None:
    first, second = replicas
    alice = await _user(first)
    made = await first.generations.generate(alice, REQUEST)
    entry, ttl_ms = await in_redis(_key(first))
    assert entry is not None
    assert entry.generation_id == made.generation.id
    assert entry.images == made.generation.images
    assert 0 < ttl_ms <= 86_400_000  # the cache TTL is 30 days; Redis keeps it a day at most
    again = await second.generations.generate(alice, REQUEST)
    assert (made.cache_status, again.cache_status) == ("miss", "hit")
    assert again.generation.source_generation_id == made.generation.id
    assert len(upstream[0].calls) == 1


async def test_a_refresh_on_one_replica_replaces_the_entry_for_every_replica(
    replicas: tuple[Services, Services], upstream: tuple[FakeState, str], in_redis: InRedis
) -> None:
    first, second = replicas
    alice = await _user(first)
    old = await first.generations.generate(alice, REQUEST)
    assert (await second.generations.generate(alice, REQUEST)).cache_status == "hit"
    fresh = await first.generations.generate(alice, REQUEST, CacheMode.REFRESH)
    assert fresh.generation.id != old.generation.id
    entry, _ = await in_redis(_key(first))
    assert entry is not None
    assert entry.generation_id == fresh.generation.id
    seen = await second.generations.generate(alice, REQUEST)
    assert seen.generation.source_generation_id == fresh.generation.id
    assert len(upstream[0].calls) == 2


async def test_an_entry_only_in_sql_is_copied_into_redis_for_its_ttl_at_most(
    tmp_path: Path,
    upstream: tuple[FakeState, str],
    redis_url: str,
    redis_prefix: str,
    in_redis: InRedis,
) -> None:
    """Entries made before Redis was configured (or after it lost them) warm it up."""
    state, url = upstream
    async with build_services(_settings(tmp_path, url, None)) as before:
        alice = await _user(before)
        made = await before.generations.generate(alice, REQUEST)
        key = _key(before)
    assert (await in_redis(key))[0] is None
    settings = _settings(
        tmp_path, url, redis_url, redis_prefix=redis_prefix, cache={"redis_seconds": 600}
    )
    async with build_services(settings) as after:
        hit = await after.generations.generate(alice, REQUEST)
    assert hit.generation.source_generation_id == made.generation.id
    entry, ttl_ms = await in_redis(key)
    assert entry is not None
    assert entry.generation_id == made.generation.id
    assert 590_000 < ttl_ms <= 600_000
    assert len(state.calls) == 1


async def test_with_redis_unreachable_the_cache_falls_through_to_sql_and_warns_once(
    tmp_path: Path, upstream: tuple[FakeState, str], caplog: pytest.LogCaptureFixture
) -> None:
    state, url = upstream
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    settings = _settings(
        tmp_path,
        url,
        nowhere,
        cache={"memory_entries": 0},
        limits=NO_TRAFFIC_LIMITS,  # what limits do without Redis is not the cache's to decide
    )
    caplog.set_level(logging.WARNING, logger="imagegate.cache.redis")
    async with build_services(settings) as services:
        alice = await _user(services)
        made = await services.generations.generate(alice, REQUEST)
        hits = [await services.generations.generate(alice, REQUEST) for _ in range(5)]
    assert made.cache_status == "miss"
    assert {h.cache_status for h in hits} == {"hit"}
    assert {h.generation.source_generation_id for h in hits} == {made.generation.id}
    assert len(state.calls) == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "fall through to SQL" in warnings[0]


def _entry(generation_id: str) -> CachedResult:
    image = StoredImage("c" * 64, "c" * 64 + ".png", "image/png", 64, 64, 100)
    return CachedResult(generation_id, (image,), 1_000)


async def test_the_tier_comes_back_by_itself_when_redis_does(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    pool = connection_pool(f"redis://127.0.0.1:{proxy.port}{target.path}", timeout_seconds=1)
    tier = RedisCache(pool, prefix=redis_prefix, max_seconds=60, retry_seconds=0.2)
    caplog.set_level(logging.WARNING, logger="imagegate.cache.redis")
    try:
        await proxy.start()
        await tier.put("*", "k", _entry("before"))
        await proxy.stop()
        assert await tier.get("*", "k") is None  # unreachable: a miss, not an error
        await tier.put("*", "k", _entry("while-down"))  # skipped, not raised
        assert len(caplog.records) == 1
        await proxy.start()
        assert await tier.get("*", "k") is None  # not asked again within retry_seconds
        await asyncio.sleep(0.25)
        found = await tier.get("*", "k")
        assert found is not None
        assert found.generation_id == "before"
        assert "reachable again" in caplog.records[-1].getMessage()
    finally:
        await tier.aclose()
        await pool.disconnect()
        await proxy.stop()


async def test_an_unreadable_value_is_a_miss_and_is_dropped(
    redis_url: str, redis_pool: aioredis.ConnectionPool, redis_prefix: str
) -> None:
    tier = RedisCache(redis_pool, prefix=redis_prefix, max_seconds=60)
    client = aioredis.Redis(connection_pool=redis_pool)
    try:
        await client.set(tier.key("*", "k"), b"not what imagegate writes")
        assert await tier.get("*", "k") is None
        assert await keys_with_prefix(redis_url, redis_prefix) == []
        await tier.add("*", "k", _entry("rewritten"))
        found = await tier.get("*", "k")
        assert found is not None
        assert found.generation_id == "rewritten"
    finally:
        await client.aclose()
        await tier.aclose()
