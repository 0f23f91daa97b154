"""Two gateway processes sharing Redis (and one database) share every per-key traffic limit:
requests per minute, images per minute and concurrent generations hold exactly across them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault, InFlightMeter
from tests.support.processes import ServerProcess, openai_provider, start_gateways


@pytest.fixture
def upstream() -> Iterator[tuple[FakeState, InFlightMeter, str]]:
    state = FakeState()
    meter = InFlightMeter(build_openai_fake(state))
    with FakeServer(meter) as server:
        yield state, meter, server.base_url


async def _spread(
    servers: list[ServerProcess], key: str, bodies: list[dict[str, Any]]
) -> list[httpx.Response]:
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


def _stop(servers: list[ServerProcess]) -> None:
    for server in servers:
        server.stop()


async def test_fifty_requests_over_two_gateways_admit_exactly_the_keys_thirty(
    tmp_path: Path,
    upstream: tuple[FakeState, InFlightMeter, str],
    database_url: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    servers, key = start_gateways(
        tmp_path,
        {"providers": openai_provider(upstream[2])},
        count=2,
        key_options=("--requests-per-minute", "30"),
        IMAGEGATE_DATABASE__URL=database_url,
        IMAGEGATE_REDIS_URL=redis_url,
        IMAGEGATE_REDIS_PREFIX=redis_prefix,
    )
    try:
        responses = await _spread(servers, key, [{"prompt": "one harbour"}] * 50)
    finally:
        _stop(servers)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 30
    assert statuses.count(429) == 20
    assert {s for i, s in enumerate(statuses) if i % 2} != {429}  # both gateways admitted some
    assert {s for i, s in enumerate(statuses) if not i % 2} != {429}
    assert {r.headers["x-ratelimit-limit-requests"] for r in responses} == {"30"}
    refused = [r for r in responses if r.status_code == 429]
    assert {r.headers["x-ratelimit-remaining-requests"] for r in refused} == {"0"}
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in refused)
    assert len(upstream[0].calls) == 1  # the 30 admitted are one generation and its reuses


async def test_a_keys_concurrent_generations_hold_across_two_gateways(
    tmp_path: Path,
    upstream: tuple[FakeState, InFlightMeter, str],
    redis_url: str,
    redis_prefix: str,
) -> None:
    state, meter, url = upstream
    state.faults.random(1.0, [Fault.latency(0.5)])
    servers, key = start_gateways(
        tmp_path,
        {"providers": openai_provider(url)},
        count=2,
        key_options=("--concurrency", "2"),
        IMAGEGATE_REDIS_URL=redis_url,
        IMAGEGATE_REDIS_PREFIX=redis_prefix,
    )
    try:
        responses = await _spread(servers, key, [{"prompt": f"a kite {i}"} for i in range(8)])
    finally:
        _stop(servers)
    assert [r.status_code for r in responses] == [200] * 8  # beyond 2, they waited their turn
    assert len(state.calls) == 8
    assert meter.peak == 2  # each gateway alone would have let 2 run: 4


async def test_a_keys_images_per_minute_are_shared_by_two_gateways(
    tmp_path: Path,
    upstream: tuple[FakeState, InFlightMeter, str],
    redis_url: str,
    redis_prefix: str,
) -> None:
    servers, key = start_gateways(
        tmp_path,
        {"providers": openai_provider(upstream[2])},
        count=2,
        IMAGEGATE_LIMITS__IMAGES_PER_MINUTE="10",
        IMAGEGATE_REDIS_URL=redis_url,
        IMAGEGATE_REDIS_PREFIX=redis_prefix,
    )
    try:
        bodies = [{"prompt": f"three boats {i}", "n": 3} for i in range(8)]
        responses = await _spread(servers, key, bodies)
    finally:
        _stop(servers)
    assert sorted(r.status_code for r in responses) == [200] * 3 + [429] * 5
    assert sum(len(r.json()["data"]) for r in responses if r.status_code == 200) == 9
    assert len(upstream[0].calls) == 3
