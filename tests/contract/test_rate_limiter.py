"""One suite for every RateLimiter: in memory and in Redis (real Redis).

Windows here are a few seconds long so the moving window can be watched moving; the sleeps
leave a few hundred milliseconds of margin on each side of every edge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import ConnectionPool

from imagegate.limits.base import RateLimiter
from imagegate.limits.memory import MemoryRateLimiter
from imagegate.models import new_id


@pytest.fixture
def memory_limiter() -> RateLimiter:
    return MemoryRateLimiter()


@pytest.fixture
async def redis_limiter(
    redis_pool: ConnectionPool, redis_prefix: str
) -> AsyncIterator[RateLimiter]:
    from imagegate.limits.redis import RedisRateLimiter

    limiter = RedisRateLimiter(redis_pool, redis_prefix)
    yield limiter
    await limiter.aclose()


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    found: RateLimiter = request.getfixturevalue(f"{request.param}_limiter")
    return found


async def _sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def test_exactly_the_limit_is_admitted_and_remaining_counts_down(
    limiter: RateLimiter,
) -> None:
    states = [await limiter.hit("requests:k", 5) for _ in range(7)]
    assert [s.admitted for s in states] == [True] * 5 + [False] * 2
    assert [s.remaining for s in states] == [4, 3, 2, 1, 0, 0, 0]
    assert {s.limit for s in states} == {5}


async def test_concurrent_hits_admit_exactly_the_limit(limiter: RateLimiter) -> None:
    states = await asyncio.gather(*(limiter.hit("requests:busy", 30) for _ in range(50)))
    assert sum(s.admitted for s in states) == 30
    assert all(s.remaining == 0 for s in states if not s.admitted)


async def test_keys_have_their_own_windows(limiter: RateLimiter) -> None:
    assert (await limiter.hit("requests:a", 1)).admitted
    assert not (await limiter.hit("requests:a", 1)).admitted
    assert (await limiter.hit("requests:b", 1)).admitted


async def test_a_cost_is_counted_whole_or_not_at_all(limiter: RateLimiter) -> None:
    first = await limiter.hit("images:k", 5, cost=3)
    assert (first.admitted, first.remaining) == (True, 2)
    too_many = await limiter.hit("images:k", 5, cost=3)
    assert (too_many.admitted, too_many.remaining) == (False, 2)  # nothing of it was counted
    rest = await limiter.hit("images:k", 5, cost=2)
    assert (rest.admitted, rest.remaining) == (True, 0)
    assert not (await limiter.hit("images:other", 5, cost=6)).admitted
    assert (await limiter.hit("images:other", 5, cost=5)).admitted  # the 6 took nothing


async def test_a_refusal_says_when_the_oldest_hit_leaves_the_window(
    limiter: RateLimiter,
) -> None:
    assert (await limiter.hit("requests:slow", 1, window_seconds=60)).admitted
    refused = await limiter.hit("requests:slow", 1, window_seconds=60)
    assert not refused.admitted
    assert 58 < refused.reset_seconds <= 60
    assert refused.retry_after == 60  # whole seconds, rounded up


async def test_the_window_moves_hit_by_hit(limiter: RateLimiter) -> None:
    """Limit 3 per 2 s: two hits at 0 s and one at 1 s. At 2.3 s the first two have left the
    window (room for two, not three as a fixed window would give); at 3.3 s the third has."""
    key = f"requests:{new_id()}"
    start = time.monotonic()
    assert all([(await limiter.hit(key, 3, window_seconds=2)).admitted for _ in range(2)])
    await _sleep_until(start + 1.0)
    assert (await limiter.hit(key, 3, window_seconds=2)).admitted
    full = await limiter.hit(key, 3, window_seconds=2)
    assert not full.admitted
    assert 0.6 < full.reset_seconds <= 1.0  # until the hits made at 0 s leave
    assert full.retry_after == 1
    await _sleep_until(start + 2.3)
    later = [await limiter.hit(key, 3, window_seconds=2) for _ in range(3)]
    assert [s.admitted for s in later] == [True, True, False]
    await _sleep_until(start + 3.3)
    assert (await limiter.hit(key, 3, window_seconds=2)).admitted


async def test_slots_are_taken_up_to_the_limit_and_freed_by_their_holder(
    limiter: RateLimiter,
) -> None:
    taken = [await limiter.acquire_slot("generations:k", 2, h, 60) for h in ("a", "b", "c")]
    assert taken == [True, True, False]
    await limiter.release_slot("generations:k", "c")  # held nothing: frees nothing
    assert not await limiter.acquire_slot("generations:k", 2, "d", 60)
    await limiter.release_slot("generations:k", "a")
    assert await limiter.acquire_slot("generations:k", 2, "d", 60)
    assert not await limiter.acquire_slot("generations:k", 2, "e", 60)
    assert await limiter.acquire_slot("generations:other", 2, "a", 60)


async def test_concurrent_slot_grabs_get_exactly_the_limit(limiter: RateLimiter) -> None:
    holders = [new_id() for _ in range(20)]
    taken = await asyncio.gather(
        *(limiter.acquire_slot("generations:busy", 3, h, 60) for h in holders)
    )
    assert sum(taken) == 3
    for holder, took in zip(holders, taken, strict=True):
        if took:
            await limiter.release_slot("generations:busy", holder)
    assert await limiter.acquire_slot("generations:busy", 3, "after", 60)


async def test_in_redis_a_slot_nobody_releases_frees_itself_after_its_ttl(
    redis_limiter: RateLimiter,
) -> None:
    """A replica that died mid-generation never releases its slot; the slot lapses."""
    assert await redis_limiter.acquire_slot("generations:k", 1, "dead-replica", 1.0)
    assert not await redis_limiter.acquire_slot("generations:k", 1, "alive", 1.0)
    await asyncio.sleep(1.2)
    assert await redis_limiter.acquire_slot("generations:k", 1, "alive", 30)


async def test_in_redis_two_replicas_share_windows_and_slots(
    redis_pool: ConnectionPool, redis_prefix: str, redis_limiter: RateLimiter
) -> None:
    from imagegate.limits.redis import RedisRateLimiter

    other = RedisRateLimiter(redis_pool, redis_prefix)  # another replica's, on the same Redis
    try:
        states = await asyncio.gather(
            *((redis_limiter if i % 2 else other).hit("requests:shared", 10) for i in range(16))
        )
        assert sum(s.admitted for s in states) == 10
        assert await redis_limiter.acquire_slot("generations:shared", 1, "one", 60)
        assert not await other.acquire_slot("generations:shared", 1, "two", 60)
        await redis_limiter.release_slot("generations:shared", "one")
        assert await other.acquire_slot("generations:shared", 1, "two", 60)
    finally:
        await other.aclose()
