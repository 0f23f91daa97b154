"""Two gateway processes sharing one database make one upstream call for 50 identical requests,
on SQLite (one file) and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault
from tests.support.processes import openai_provider, start_gateways

BODY = {"model": "gpt-image-1", "prompt": "one fox for everyone", "size": "1024x1024",
        "quality": "low"}  # fmt: skip


@pytest.fixture
def upstream() -> Iterator[tuple[FakeState, str]]:
    state = FakeState()
    state.faults.random(1.0, [Fault.latency(1.5)])  # every call is slow enough to overlap
    with FakeServer(build_openai_fake(state)) as server:
        yield state, server.base_url


async def test_fifty_identical_requests_over_two_processes_make_one_call(
    tmp_path: Path, upstream: tuple[FakeState, str], database_url: str
) -> None:
    state, upstream_url = upstream
    servers, key = start_gateways(
        tmp_path,
        {"providers": openai_provider(upstream_url)},
        count=2,
        IMAGEGATE_DATABASE__URL=database_url,
    )
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{servers[i % 2].base_url}/v1/images/generations",
                        json=BODY,
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    for i in range(50)
                )
            )
    finally:
        for server in servers:
            server.stop()
    assert [r.status_code for r in responses] == [200] * 50
    assert len(state.calls) == 1
    files = {r.json()["data"][0]["url"].rpartition("/files/")[2] for r in responses}
    assert len(files) == 1
    statuses = sorted(r.headers["x-imagegate-cache"] for r in responses)
    assert statuses.count("miss") == 1
    assert set(statuses) <= {"miss", "coalesced", "hit"}
