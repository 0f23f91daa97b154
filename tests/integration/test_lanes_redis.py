"""Model lanes whose key slots live in Redis, when Redis goes away and comes back (a real
Redis behind a proxy the test closes): the lane keeps its capacity, waiters hear the error
instead of waiting forever, and a finished generation is never failed by its slot release."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from tests.support.tcp_proxy import TcpProxy

from imagegate.errors import Unavailable
from imagegate.limits.redis import RedisRateLimiter, connection_pool
from imagegate.models import Principal, RateLimits, Role
from imagegate.services.lanes import ModelLanes, QueueWatch

ONE_AT_A_TIME = Principal(
    user_id="u1", user_name="u", role=Role.USER, key_id="k1", rate_limits=RateLimits(None, 1)
)


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(redis_url)
    running = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def lanes(redis_url: str, redis_prefix: str, proxy: TcpProxy) -> AsyncIterator[ModelLanes]:
    path = urlsplit(redis_url).path
    pool = connection_pool(f"redis://127.0.0.1:{proxy.port}{path}", timeout_seconds=1)
    limiter = RedisRateLimiter(pool, redis_prefix)
    built = ModelLanes(
        limiter,
        capacity=lambda _model: 2,  # room in the lane: waiters wait for their key's slot
        concurrent_generations=2,
        max_waiting=10,
        max_waiting_per_key=10,
        slot_seconds=60,
        poll_seconds=0.05,
    )
    try:
        yield built
    finally:
        await built.aclose()
        await limiter.aclose()
        await pool.disconnect()


def _running(lanes: ModelLanes) -> int:
    return sum(stats.running for stats in lanes.stats())


async def test_a_slot_that_could_not_be_taken_costs_the_lane_no_capacity(
    lanes: ModelLanes, proxy: TcpProxy
) -> None:
    await proxy.stop()
    with pytest.raises(Unavailable):
        async with lanes.admitted(ONE_AT_A_TIME, "m"):
            pytest.fail("admitted without a slot")
    assert _running(lanes) == 0
    await proxy.start()
    async with asyncio.timeout(5), lanes.admitted(ONE_AT_A_TIME, "m"):
        assert _running(lanes) == 1  # the failed attempt holds no place
    assert _running(lanes) == 0


@pytest.mark.parametrize("abandonable", [True, False], ids=["http-request", "plain-waiter"])
async def test_waiters_hear_the_error_and_a_finished_holder_still_finishes(
    lanes: ModelLanes, proxy: TcpProxy, caplog: pytest.LogCaptureFixture, abandonable: bool
) -> None:
    """(An HTTP request waits with an ``abandoned`` event, set if its client leaves.)"""
    queued = asyncio.Event()
    first_in = asyncio.Event()
    let_go = asyncio.Event()

    async def holder() -> str:
        async with lanes.admitted(ONE_AT_A_TIME, "m"):
            first_in.set()
            await let_go.wait()
        return "finished"

    async def waiter() -> None:
        async with lanes.admitted(
            ONE_AT_A_TIME,
            "m",
            QueueWatch(
                on_position=lambda _: queued.set(),
                abandoned=asyncio.Event() if abandonable else None,
            ),
        ):
            pytest.fail("admitted while the key's one slot was held")

    holding = asyncio.create_task(holder())
    await first_in.wait()
    waiting = asyncio.create_task(waiter())
    await queued.wait()  # in line, passed over for the key's slot, polling Redis
    await proxy.stop()
    async with asyncio.timeout(5):
        [heard] = await asyncio.gather(waiting, return_exceptions=True)
    assert isinstance(heard, Unavailable)  # told at once, not left waiting
    caplog.set_level(logging.WARNING, logger="imagegate.services.lanes")
    let_go.set()
    assert await holding == "finished"  # the provider was called: its result is not lost
    assert "lapses" in caplog.text
    assert _running(lanes) == 0
    assert [stats.waiting for stats in lanes.stats()] == [0]
