"""Synchronous requests wait in their model's line over real HTTP: a client that leaves while
queued causes no upstream call, and a full line is refused at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault
from tests.support.processes import ServerProcess, openai_provider, start_gateways

BODY = {"model": "gpt-image-1", "size": "1024x1024", "quality": "low"}


@pytest.fixture
def upstream() -> Iterator[tuple[FakeState, str]]:
    state = FakeState()
    with FakeServer(build_openai_fake(state)) as server:
        yield state, server.base_url


@pytest.fixture
def gateway(
    tmp_path: Path, upstream: tuple[FakeState, str]
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    provider = openai_provider(upstream[1])
    provider["openai"]["max_concurrency"] = 1  # type: ignore[index]
    (server,), key = start_gateways(
        tmp_path, {"providers": provider}, IMAGEGATE_LIMITS__QUEUE_SIZE="1"
    )
    try:
        yield server, {"Authorization": f"Bearer {key}"}
    finally:
        server.stop()


async def test_a_client_that_leaves_while_queued_causes_no_upstream_call(
    gateway: tuple[ServerProcess, dict[str, str]], upstream: tuple[FakeState, str]
) -> None:
    server, auth = gateway
    state, _ = upstream
    state.faults.next(Fault.latency(1.5))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        first = asyncio.create_task(
            client.post("/v1/images/generations", json={**BODY, "prompt": "first"}, headers=auth)
        )
        await asyncio.sleep(0.3)  # first is at the provider; the lane is full
        leaving = asyncio.create_task(
            client.post("/v1/images/generations", json={**BODY, "prompt": "left"}, headers=auth)
        )
        await asyncio.sleep(0.3)
        leaving.cancel()  # the client hangs up while queued
        assert (await first).status_code == 200
        await asyncio.sleep(0.5)
        after = await client.post(
            "/v1/images/generations", json={**BODY, "prompt": "after"}, headers=auth
        )
    assert after.status_code == 200
    assert [json.loads(call.body)["prompt"] for call in state.calls] == ["first", "after"]


async def test_a_full_line_is_refused_at_once_in_the_openai_shape(
    gateway: tuple[ServerProcess, dict[str, str]], upstream: tuple[FakeState, str]
) -> None:
    server, auth = gateway
    state, _ = upstream
    state.faults.next(Fault.latency(1.0))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        running = asyncio.create_task(
            client.post("/v1/images/generations", json={**BODY, "prompt": "a"}, headers=auth)
        )
        await asyncio.sleep(0.3)
        waiting = asyncio.create_task(
            client.post("/v1/images/generations", json={**BODY, "prompt": "b"}, headers=auth)
        )
        await asyncio.sleep(0.3)
        refused = await client.post(
            "/v1/images/generations", json={**BODY, "prompt": "c"}, headers=auth
        )
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("queue_full", "model")
        assert "gpt-image-1" in error["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-ratelimit-limit-requests"]
        assert (await running).status_code == 200
        assert (await waiting).status_code == 200
