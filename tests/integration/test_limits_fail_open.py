"""Rate limits in Redis when Redis goes away (a real Redis behind a proxy the test cuts):
closed (the default) refuses with 503; open admits, logs the outage once, and enforces the
limits again when Redis is back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from tests.support.tcp_proxy import TcpProxy

from imagegate.api.app import create_app
from imagegate.container import build_services
from imagegate.errors import Unavailable
from imagegate.limits.fail_open import FailOpenRateLimiter
from imagegate.limits.redis import RedisRateLimiter, connection_pool
from imagegate.settings import Settings


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
async def limiter(
    redis_url: str, redis_prefix: str, proxy: TcpProxy
) -> AsyncIterator[RedisRateLimiter]:
    pool = connection_pool(f"redis://127.0.0.1:{proxy.port}{urlsplit(redis_url).path}", 0.5)
    built = RedisRateLimiter(pool, redis_prefix)
    try:
        yield built
    finally:
        await built.aclose()
        await pool.disconnect()


async def test_closed_refuses_while_redis_is_away(
    limiter: RedisRateLimiter, proxy: TcpProxy
) -> None:
    assert (await limiter.hit("k", 1)).admitted
    await proxy.stop()
    with pytest.raises(Unavailable) as refused:
        await limiter.hit("k", 1)
    assert refused.value.status == 503


async def test_open_admits_logs_once_and_recovers(
    limiter: RedisRateLimiter, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    open_limiter = FailOpenRateLimiter(limiter)
    assert (await open_limiter.hit("k", 1)).admitted
    assert not (await open_limiter.hit("k", 1)).admitted  # enforced while Redis answers
    await proxy.stop()
    with caplog.at_level(logging.WARNING, logger="imagegate.limits.fail_open"):
        for _ in range(5):
            assert (await open_limiter.hit("k", 1)).admitted
        assert await open_limiter.acquire_slot("slots", 1, "h1", 60)
        assert open_limiter.degraded is not None
        await proxy.start()
        assert not (await open_limiter.hit("k", 1)).admitted  # enforced again
    assert open_limiter.degraded is None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("not enforced" in m for m in messages) == 1
    assert sum("enforced again" in m for m in messages) == 1


@pytest.mark.parametrize("policy", ["open", "closed"])
async def test_gateway_with_redis_away(
    tmp_path: Path, redis_url: str, redis_prefix: str, proxy: TcpProxy, policy: str
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        redis_url=f"redis://127.0.0.1:{proxy.port}{urlsplit(redis_url).path}",
        redis_prefix=redis_prefix,
        redis_timeout_seconds=0.5,
        limits={"on_redis_error": policy},
    )
    body = {"model": "builtin", "prompt": "a quiet harbour", "size": "256x256"}
    async with build_services(settings) as services:
        key = (await services.keys.create("ops")).secret
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            auth = {"Authorization": f"Bearer {key}"}
            await proxy.stop()
            made = await client.post("/v1/images/generations", json=body, headers=auth)
            ready = (await client.get("/readyz")).json()
            await proxy.start()
            if policy == "open":
                assert made.status_code == 200, made.text
                assert ready["status"] == "degraded"
                assert any("rate limits" in reason for reason in ready["degraded"])
                again = await client.post("/v1/images/generations", json=body, headers=auth)
                assert again.status_code == 200
                assert (await client.get("/readyz")).json()["status"] == "ok"
            else:
                assert made.status_code == 503
                assert made.json()["error"]["code"] == "service_unavailable"
                assert ready["status"] == "ok"
