"""Two gateway processes sharing Redis (and one database) share every per-key traffic limit:
requests per minute, images per minute and concurrent generations hold exactly across them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.fakes.server import Fault, MeteredFake
from tests.support.processes import ServerProcess, openai_provider, start_gateways

Bodies = list[dict[str, Any]]
OnTwoGateways = Callable[..., Awaitable[list[httpx.Response]]]


async def _spread(servers: list[ServerProcess], key: str, bodies: Bodies) -> list[httpx.Response]:
    """Send ``bodies`` at once, alternating between the gateways."""
    body = {"model": "gpt-image-1", "size": "1024x1024", "quality": "low"}
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{servers[i % len(servers)].base_url}/v1/images/generations",
                    json={**body, **fields},
                    headers={"Authorization": f"Bearer {key}"},
                )
                for i, fields in enumerate(bodies)
            )
        )


@pytest.fixture
def on_two_gateways(
    tmp_path: Path, metered_upstream: MeteredFake, redis_url: str, redis_prefix: str
) -> OnTwoGateways:
    """``await on_two_gateways(bodies, key_options, **env)``: start two gateways on this test's
    Redis keys with a key made by ``imagegate keys create ... key_options``, send ``bodies``
    spread over both at once, stop them, and return the responses in order."""

    async def send(
        bodies: Bodies, key_options: Sequence[str] = (), **env: str
    ) -> list[httpx.Response]:
        servers, key = start_gateways(
            tmp_path,
            {"providers": openai_provider(metered_upstream[2])},
            count=2,
            key_options=key_options,
            IMAGEGATE_REDIS_URL=redis_url,
            IMAGEGATE_REDIS_PREFIX=redis_prefix,
            **env,
        )
        try:
            return await _spread(servers, key, bodies)
        finally:
            for server in servers:
                server.stop()

    return send


async def test_fifty_requests_over_two_gateways_admit_exactly_the_keys_thirty(
    on_two_gateways: OnTwoGateways, metered_upstream: MeteredFake, database_url: str
) -> None:
    responses = await on_two_gateways(
        [{"prompt": "one harbour"}] * 50,
        ("--requests-per-minute", "30"),
        IMAGEGATE_DATABASE__URL=database_url,
    )
    statuses = [r.status_code for r in responses]
    odd = [r.text for r in responses if r.status_code not in (200, 429)]
    assert statuses.count(200) == 30, (statuses, odd[:3])
    assert statuses.count(429) == 20
    assert 200 in statuses[0::2]  # each gateway admitted some (25 each could not make 30)
    assert 200 in statuses[1::2]
    assert {r.headers["x-ratelimit-limit-requests"] for r in responses} == {"30"}
    refused = [r for r in responses if r.status_code == 429]
    assert {r.headers["x-ratelimit-remaining-requests"] for r in refused} == {"0"}
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in refused)
    assert len(metered_upstream[0].calls) == 1  # the 30 admitted: one generation, its reuses


async def test_a_keys_concurrent_generations_hold_across_two_gateways(
    on_two_gateways: OnTwoGateways, metered_upstream: MeteredFake
) -> None:
    state, meter, _ = metered_upstream
    state.faults.random(1.0, [Fault.latency(0.5)])
    responses = await on_two_gateways(
        [{"prompt": f"a kite {i}"} for i in range(8)], ("--concurrency", "2")
    )
    assert [r.status_code for r in responses] == [200] * 8  # beyond 2, they waited their turn
    assert len(state.calls) == 8
    assert meter.peak == 2  # each gateway alone would have let 2 run: 4


async def test_a_keys_images_per_minute_are_shared_by_two_gateways(
    on_two_gateways: OnTwoGateways, metered_upstream: MeteredFake
) -> None:
    responses = await on_two_gateways(
        [{"prompt": f"three boats {i}", "n": 3} for i in range(8)],
        IMAGEGATE_LIMITS__IMAGES_PER_MINUTE="10",
    )
    assert sorted(r.status_code for r in responses) == [200] * 3 + [429] * 5
    assert sum(len(r.json()["data"]) for r in responses if r.status_code == 200) == 9
    assert len(metered_upstream[0].calls) == 3
