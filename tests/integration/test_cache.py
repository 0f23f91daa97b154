"""Pay once: the exact cache and in-flight de-duplication, against a real OpenAI fake."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault

from imagegate.container import Services, build_services
from imagegate.errors import ContentPolicyViolation
from imagegate.models import GenerationRequest, Outcome, Principal, ResponseFormat
from imagegate.services.caching import CacheMode
from imagegate.settings import Settings

BODY = {"model": "gpt-image-1", "size": "1024x1024", "quality": "low"}


@pytest.fixture
def upstream() -> Iterator[tuple[FakeState, str]]:
    state = FakeState()
    with FakeServer(build_openai_fake(state)) as server:
        yield state, server.base_url


def _settings(tmp_path: Path, url: str, **cache: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_url="http://img.test",
        providers={"openai": {"kind": "openai", "base_url": f"{url}/v1", "api_key": "test-key"}},
        cache=cache,
    )  # type: ignore[arg-type]


def _request(prompt: str = "a red fox", **fields: Any) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, **{**BODY, **fields})


async def _user(services: Services, name: str = "alice") -> Principal:
    issued = await services.keys.create(name)
    return await services.keys.authenticate(f"Bearer {issued.secret}")


def _rows(tmp_path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "data" / "imagegate.db") as conn:
        return list(conn.execute(query).fetchall())


async def test_an_identical_request_is_a_hit_that_calls_no_provider_and_saves_its_cost(
    upstream: tuple[FakeState, str], tmp_path: Path
) -> None:
    state, url = upstream
    async with build_services(_settings(tmp_path, url)) as services:
        alice = await _user(services)
        first = await services.generations.generate(alice, _request())
        again = await services.generations.generate(alice, _request("  a red   fox "))
    assert len(state.calls) == 1
    assert (first.cache_status, again.cache_status) == ("miss", "hit")
    assert again.generation.outcome is Outcome.CACHE_HIT
    assert again.generation.cost_micro_usd == 0
    assert again.generation.saved_cost_micro_usd == first.generation.cost_micro_usd > 0
    assert again.generation.source_generation_id == first.generation.id
    assert [i.url for i in again.images] == [i.url for i in first.images]
    events = _rows(
        tmp_path, f"SELECT type FROM events WHERE generation_id = '{again.generation.id}'"
    )
    assert [e[0] for e in events] == ["generation_started", "generation_skipped"]


async def test_a_hit_delivers_the_same_bytes_inline(
    upstream: tuple[FakeState, str], tmp_path: Path
) -> None:
    _, url = upstream
    inline = {"response_format": ResponseFormat.B64_JSON}
    async with build_services(_settings(tmp_path, url)) as services:
        alice = await _user(services)
        first = await services.generations.generate(alice, _request(**inline))
        again = await services.generations.generate(alice, _request(**inline))
    assert again.cache_status == "hit"
    assert [i.data for i in again.images] == [i.data for i in first.images]
    assert again.images[0].data


async def test_hits_survive_a_restart(upstream: tuple[FakeState, str], tmp_path: Path) -> None:
    state, url = upstream
    async with build_services(_settings(tmp_path, url)) as services:
        await services.generations.generate(await _user(services), _request())
    async with build_services(_settings(tmp_path, url)) as services:
        again = await services.generations.generate(await _user(services, "bob"), _request())
    assert again.cache_status == "hit"
    assert len(state.calls) == 1


async def test_refresh_makes_one_new_call_and_replaces_the_entry(
    upstream: tuple[FakeState, str], tmp_path: Path
) -> None:
    state, url = upstream
    async with build_services(_settings(tmp_path, url)) as services:
        alice = await _user(services)
        await services.generations.generate(alice, _request())
        fresh = await services.generations.generate(alice, _request(), CacheMode.REFRESH)
        after = await services.generations.generate(alice, _request())
    assert len(state.calls) == 2
    assert fresh.cache_status == "miss"
    assert after.generation.source_generation_id == fresh.generation.id
    assert _rows(tmp_path, "SELECT count(*) FROM cache_entries") == [(1,)]


async def test_bypass_makes_a_new_call_and_no_entry(
    upstream: tuple[FakeState, str], tmp_path: Path
) -> None:
    state, url = upstream
    async with build_services(_settings(tmp_path, url)) as services:
        alice = await _user(services)
        bypassed = await services.generations.generate(alice, _request(), CacheMode.BYPASS)
        then = await services.generations.generate(alice, _request())
    assert bypassed.cache_status == "bypass"
    assert then.cache_status == "miss"
    assert len(state.calls) == 2
    rows = _rows(tmp_path, "SELECT generation_id FROM cache_entries")
    assert rows == [(then.generation.id,)]


async def test_ten_concurrent_identical_requests_make_one_upstream_call(
    upstream: tuple[FakeState, str], tmp_path: Path
) -> None:
    state, url = upstream
    state.faults.next(Fault.latency(0.5))
    async with build_services(_settings(tmp_path, url)) as services:
        alice = await _user(services)
        results = await asyncio.gather(
            *(services.generations.generate(alice, _request()) for _ in range(10))
        )
    assert len(state.calls) == 1
    outcomes = sorted(r.generation.outcome.value for r in results)
    assert outcomes == ["coalesced"] * 9 + ["generated"]
    assert len({r.images[0].url for r in results}) == 1
    leader = next(r for r in results if r.generation.outcome is Outcome.GENERATED)
    assert all(
        r.generation.saved_cost_micro_usd == leader.generation.cost_micro_usd
        for r in results
        if r is not leader
    )


async def test_a_failure_reaches_every_waiter_and_is_not_cached(
    upstream: tuple[FakeState, str], tmp_path: Path
) -> None:
    state, url = upstream
    state.faults.next(Fault.safety(after=0.5))  # the others join the first call, then it fails
    async with build_services(_settings(tmp_path, url)) as services:
        alice = await _user(services)
        outcomes = await asyncio.gather(
            *(services.generations.generate(alice, _request()) for _ in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(o, ContentPolicyViolation) for o in outcomes)
        assert len(state.calls) == 1
        later = await services.generations.generate(alice, _request())
    assert later.cache_status == "miss"
    assert len(state.calls) == 2
    assert _rows(tmp_path, "SELECT count(*) FROM generations WHERE outcome = 'failed'") == [(5,)]


async def test_expired_entries_are_not_reused(
    upstream: tuple[FakeState, str], tmp_path: Path
) -> None:
    state, url = upstream
    async with build_services(_settings(tmp_path, url, ttl_seconds=0.2)) as services:
        alice = await _user(services)
        await services.generations.generate(alice, _request())
        await asyncio.sleep(0.3)
        again = await services.generations.generate(alice, _request())
    assert again.cache_status == "miss"
    assert len(state.calls) == 2


async def test_per_user_scope_keeps_users_apart(
    upstream: tuple[FakeState, str], tmp_path: Path
) -> None:
    state, url = upstream
    async with build_services(_settings(tmp_path, url, scope="user")) as services:
        alice, bob = await _user(services), await _user(services, "bob")
        await services.generations.generate(alice, _request())
        theirs = await services.generations.generate(bob, _request())
        mine = await services.generations.generate(alice, _request())
    assert (theirs.cache_status, mine.cache_status) == ("miss", "hit")
    assert len(state.calls) == 2


async def test_different_parameters_are_different_entries(
    upstream: tuple[FakeState, str], tmp_path: Path
) -> None:
    state, url = upstream
    async with build_services(_settings(tmp_path, url)) as services:
        alice = await _user(services)
        for change in ({}, {"quality": "high"}, {"size": "1536x1024"}, {"n": 2}):
            result = await services.generations.generate(alice, _request(**change))
            assert result.cache_status == "miss"
    assert len(state.calls) == 4
