"""Per-key traffic limits under real concurrent load, on the memory backend and on Redis:
requests per minute, images per minute and concurrent generations hold exactly, with OpenAI's
``x-ratelimit-*-requests`` headers and ``Retry-After``; requests beyond a key's concurrency
wait in line, and full lines are refused at once.

Each test drives one in-process gateway over HTTP (the app on httpx's ASGI transport) in
front of the OpenAI fake; ``test_traffic_limits_processes.py`` does the same across two
gateway processes sharing Redis.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.fakes.server import Fault, MeteredFake
from tests.support.processes import free_port

from imagegate.api.app import create_app
from imagegate.container import build_services
from imagegate.models import RateLimits
from imagegate.settings import Settings

Gateway = tuple[httpx.AsyncClient, Callable[..., Any]]
OpenGateway = Callable[..., AbstractAsyncContextManager[Gateway]]


def reset_seconds(header: str) -> float:
    """``x-ratelimit-reset-requests`` (``850ms``, ``12s``, ``1m0s``) in seconds."""
    found = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?|(\d+)ms", header)
    assert found is not None, header
    minutes, seconds, millis = found.groups()
    if millis is not None:
        return int(millis) / 1000
    return int(minutes or 0) * 60 + int(seconds or 0)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings that pick the limiter: this process's memory, or the test's own Redis keys."""
    if request.param == "memory":
        return {}
    return {
        "redis_url": request.getfixturevalue("redis_url"),
        "redis_prefix": request.getfixturevalue("redis_prefix"),
    }


@pytest.fixture
def open_gateway(
    tmp_path: Path, metered_upstream: MeteredFake, backend: dict[str, Any]
) -> OpenGateway:
    """``async with open_gateway(limits={...}, max_concurrency=N) as (client, new_key):`` a
    gateway on ``backend``; ``new_key(name, rate_limits)`` issues a key and returns its auth
    headers."""
    url = metered_upstream[2]

    @asynccontextmanager
    async def open_(
        limits: dict[str, Any] | None = None, max_concurrency: int = 10
    ) -> AsyncIterator[Gateway]:
        provider = {"kind": "openai", "base_url": f"{url}/v1", "api_key": "test-key"}
        settings = Settings(
            data_dir=tmp_path / "data",
            public_url="http://img.test",
            providers={"openai": {**provider, "max_concurrency": max_concurrency}},
            limits=limits or {},
            **backend,
        )
        async with build_services(settings) as services:

            async def new_key(name: str, rate_limits: RateLimits) -> dict[str, str]:
                issued = await services.keys.create(name, rate_limits=rate_limits)
                return {"Authorization": f"Bearer {issued.secret}"}

            transport = httpx.ASGITransport(app=create_app(services))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gw", timeout=60
            ) as client:
                yield client, new_key

    return open_


def _post(client: httpx.AsyncClient, auth: dict[str, str], prompt: str, **fields: Any) -> Any:
    body = {"model": "gpt-image-1", "prompt": prompt, "size": "1024x1024", "quality": "low"}
    return client.post("/v1/images/generations", json={**body, **fields}, headers=auth)


async def test_requests_per_minute_admit_exactly_the_limit_under_concurrent_load(
    open_gateway: OpenGateway, backend: dict[str, Any]
) -> None:
    async with open_gateway() as (client, new_key):
        auth = await new_key("rpm-30", RateLimits(requests_per_minute=30))
        responses = await asyncio.gather(
            *(_post(client, auth, "the same lighthouse") for _ in range(50))
        )
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(admitted) == 30
    assert {r.status_code for r in refused} == {429}
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in refused)
    assert {r.headers["x-ratelimit-limit-requests"] for r in responses} == {"30"}
    assert {r.headers["x-ratelimit-remaining-requests"] for r in refused} == {"0"}
    remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in admitted)
    if not backend:  # memory: each request's hit and its count are one step
        assert remaining == list(range(30))
    else:  # Redis: the count is read just after the hit, others' hits may come between
        assert remaining[0] == 0
        assert remaining[-1] <= 29
    assert all(0 < reset_seconds(r.headers["x-ratelimit-reset-requests"]) <= 60 for r in responses)


async def test_the_headers_count_down_request_by_request(open_gateway: OpenGateway) -> None:
    async with open_gateway() as (client, new_key):
        auth = await new_key("rpm-3", RateLimits(requests_per_minute=3))
        sent = [await _post(client, auth, "a quiet harbour") for _ in range(4)]
        other = await _post(client, await new_key("other", RateLimits(3)), "a quiet harbour")
    assert [r.status_code for r in sent] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in sent] == ["2", "1", "0", "0"]
    resets = [reset_seconds(r.headers["x-ratelimit-reset-requests"]) for r in sent]
    assert all(58 <= s <= 60 for s in resets)  # the first hit leaves the window in a minute
    assert 58 <= int(sent[3].headers["retry-after"]) <= 60
    assert "per minute" in sent[3].json()["error"]["message"]
    assert other.headers["x-ratelimit-remaining-requests"] == "2"  # keys do not share


async def test_images_per_minute_count_whole_requests_exactly(
    open_gateway: OpenGateway, metered_upstream: MeteredFake
) -> None:
    async with open_gateway(limits={"images_per_minute": 10}) as (client, new_key):
        auth = await new_key("images-10", RateLimits())
        threes = await asyncio.gather(
            *(_post(client, auth, f"three boats {i}", n=3) for i in range(8))
        )
        one_more = await _post(client, auth, "the tenth image", n=1)
        two_more = await _post(client, auth, "two more", n=2)
        too_many = await _post(client, auth, "eleven at once", n=11)
    assert sorted(r.status_code for r in threes) == [200] * 3 + [429] * 5
    refusal = next(r for r in threes if r.status_code == 429)
    assert refusal.json()["error"]["code"] == "rate_limit_exceeded"
    assert refusal.json()["error"]["param"] == "n"
    assert 1 <= int(refusal.headers["retry-after"]) <= 60
    assert one_more.status_code == 200  # 9 were counted, not 12: refusals count nothing
    assert two_more.status_code == 429
    assert too_many.status_code == 400
    made = sum(len(r.json()["data"]) for r in (*threes, one_more) if r.status_code == 200)
    assert made == 10
    assert len(metered_upstream[0].calls) == 4


async def test_a_keys_concurrent_generations_hold_and_the_rest_wait_their_turn(
    open_gateway: OpenGateway, metered_upstream: MeteredFake
) -> None:
    state, meter, _ = metered_upstream
    state.faults.random(1.0, [Fault.latency(0.4)])
    async with open_gateway() as (client, new_key):
        two = await new_key("two-at-once", RateLimits(concurrent_generations=2))
        one = await new_key("one-at-once", RateLimits(concurrent_generations=1))
        responses = await asyncio.gather(
            *(_post(client, two, f"a kite {i}") for i in range(6)),
            *(_post(client, one, f"a drum {i}") for i in range(3)),
        )
    assert [r.status_code for r in responses] == [200] * 9  # waited, not refused
    assert len(state.calls) == 9
    assert meter.peak == 3  # 2 + 1: never more, though the provider takes 10


async def test_a_key_with_its_line_full_is_refused_at_once(
    open_gateway: OpenGateway, metered_upstream: MeteredFake
) -> None:
    state, _, _ = metered_upstream
    state.faults.random(1.0, [Fault.latency(0.5)])
    limits = {"queue_size_per_key": 3}
    async with open_gateway(limits=limits) as (client, new_key):
        auth = await new_key("one-at-once", RateLimits(concurrent_generations=1))
        responses = await asyncio.gather(*(_post(client, auth, f"a bell {i}") for i in range(6)))
    assert sorted(r.status_code for r in responses) == [200] * 4 + [429] * 2  # 1 ran, 3 waited
    refused = [r for r in responses if r.status_code == 429]
    assert {r.json()["error"]["code"] for r in refused} == {"concurrency_limit_exceeded"}
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert len(state.calls) == 4


async def test_a_full_model_line_is_refused_at_once_with_queue_full(
    open_gateway: OpenGateway, metered_upstream: MeteredFake
) -> None:
    state, meter, _ = metered_upstream
    state.faults.random(1.0, [Fault.latency(0.5)])
    async with open_gateway(limits={"queue_size": 2}, max_concurrency=1) as (client, new_key):
        keys = [await new_key(f"key-{i}", RateLimits()) for i in range(5)]
        responses = await asyncio.gather(
            *(_post(client, auth, f"a tower {i}") for i, auth in enumerate(keys))
        )
    assert sorted(r.status_code for r in responses) == [200] * 3 + [429] * 2  # 1 ran, 2 waited
    refused = [r for r in responses if r.status_code == 429]
    assert {r.json()["error"]["code"] for r in refused} == {"queue_full"}
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert meter.peak == 1


async def test_with_redis_unreachable_a_limited_request_is_a_503_to_retry(tmp_path: Path) -> None:
    """Limits fail closed for now (the cache fails open): a clear 503, never a 500."""
    settings = Settings(data_dir=tmp_path / "data", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with build_services(settings) as services:
        issued = await services.keys.create("limited")
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            answer = await client.post(
                "/v1/images/generations",
                json={"model": "builtin", "prompt": "a fox", "size": "256x256"},
                headers={"Authorization": f"Bearer {issued.secret}"},
            )
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "service_unavailable"
    assert answer.headers["retry-after"] == "5"
    assert "127.0.0.1" not in answer.text
