"""Budgets and quotas hold exactly under concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault

from imagegate.container import Services, build_services
from imagegate.errors import BudgetExceeded, ImagegateError, QuotaExceeded
from imagegate.models import GenerationRequest, Limits, Principal
from imagegate.settings import DatabaseSettings, Settings

PRICE = 16_000  # dall-e-2, 256x256: $0.016 per image


@pytest.fixture
def upstream() -> Iterator[tuple[FakeState, str]]:
    state = FakeState()
    with FakeServer(build_openai_fake(state)) as server:
        yield state, server.base_url


def _settings(tmp_path: Path, url: str, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_url="http://img.test",
        database=DatabaseSettings(url=database_url),
        providers={"openai": {"kind": "openai", "base_url": f"{url}/v1", "api_key": "test-key"}},
        resilience={"max_attempts": 1},
        limits={"images_per_minute": 0},  # budgets under test, not the traffic window
    )  # type: ignore[arg-type]


def _request(i: int, **fields: Any) -> GenerationRequest:
    return GenerationRequest(prompt=f"fox {i}", model="dall-e-2", size="256x256", **fields)


async def _principal(services: Services, limits: Limits) -> Principal:
    issued = await services.keys.create("budgeted", limits=limits)
    return await services.keys.authenticate(f"Bearer {issued.secret}")


async def _counters(database_url: str) -> list[tuple[int, int]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT spent_micro_usd, reserved_micro_usd FROM budget_counters")
            )
            return [(int(r[0]), int(r[1])) for r in rows]
    finally:
        await engine.dispose()


async def test_two_hundred_concurrent_requests_fit_a_budget_of_exactly_25(
    upstream: tuple[FakeState, str], tmp_path: Path, database_url: str
) -> None:
    state, url = upstream
    async with build_services(_settings(tmp_path, url, database_url)) as services:
        principal = await _principal(services, Limits(budget_micro_usd_day=25 * PRICE))
        outcomes = await asyncio.gather(
            *(services.generations.generate(principal, _request(i)) for i in range(200)),
            return_exceptions=True,
        )
    made = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    assert (len(made), len(refused)) == (25, 175)
    assert len(state.calls) == 25
    assert sum(r.generation.cost_micro_usd for r in made) == 25 * PRICE
    assert all(e.status == 429 and e.retry_after for e in refused)
    assert await _counters(database_url) == [(25 * PRICE, 0)]


async def test_a_failed_call_releases_its_reservation(
    upstream: tuple[FakeState, str], tmp_path: Path, database_url: str
) -> None:
    state, url = upstream
    async with build_services(_settings(tmp_path, url, database_url)) as services:
        principal = await _principal(services, Limits(budget_micro_usd_day=PRICE))
        state.faults.next(Fault.error(500))
        with pytest.raises(ImagegateError) as caught:
            await services.generations.generate(principal, _request(1))
        assert not isinstance(caught.value, BudgetExceeded)
        assert await _counters(database_url) == [(0, 0)]
        ok = await services.generations.generate(principal, _request(2))  # the budget is free
        assert ok.generation.cost_micro_usd == PRICE
        with pytest.raises(BudgetExceeded):
            await services.generations.generate(principal, _request(3))


async def test_cache_hits_spend_nothing(
    upstream: tuple[FakeState, str], tmp_path: Path, database_url: str
) -> None:
    _, url = upstream
    async with build_services(_settings(tmp_path, url, database_url)) as services:
        principal = await _principal(services, Limits(budget_micro_usd_day=PRICE))
        await services.generations.generate(principal, _request(1))
        hits = [await services.generations.generate(principal, _request(1)) for _ in range(3)]
    assert [h.cache_status for h in hits] == ["hit"] * 3
    assert await _counters(database_url) == [(PRICE, 0)]


async def test_an_image_quota_refuses_with_the_reset_time(
    upstream: tuple[FakeState, str], tmp_path: Path, database_url: str
) -> None:
    _, url = upstream
    async with build_services(_settings(tmp_path, url, database_url)) as services:
        principal = await _principal(services, Limits(images_per_minute=3))
        await services.generations.generate(principal, _request(1, n=2))
        with pytest.raises(QuotaExceeded) as caught:
            await services.generations.generate(principal, _request(2, n=2))
        await services.generations.generate(principal, _request(3, n=1))
    assert caught.value.code == "quota_exceeded"
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 60
    assert "3 images per minute" in caught.value.message


async def test_a_hold_left_by_a_dead_request_is_given_back_once_it_expires(
    upstream: tuple[FakeState, str], tmp_path: Path, database_url: str
) -> None:
    _, url = upstream
    settings = _settings(tmp_path, url, database_url).model_copy(
        update={"budget_hold_seconds": 0.2}
    )
    async with build_services(settings) as services:
        principal = await _principal(services, Limits(budget_micro_usd_day=2 * PRICE))
        # What a process that died between reserving and settling leaves behind:
        orphan = await services.budgets.reserve(principal, PRICE, 1)
        late = await services.budgets.reserve(principal, PRICE, 1)
        with pytest.raises(BudgetExceeded):
            await services.generations.generate(principal, _request(1))
        assert await _counters(database_url) == [(0, 2 * PRICE)]
        await asyncio.sleep(0.3)
        assert await services.budgets.release_expired() == 2
        assert await _counters(database_url) == [(0, 0)]
        # a request that was only slow settles after its hold was swept: its spend counts,
        # its hold is not taken back twice
        await services.budgets.settle(late, PRICE, 1)
        assert await _counters(database_url) == [(PRICE, 0)]
        assert await services.budgets.release_expired() == 0
        await services.generations.generate(principal, _request(2))
        assert orphan is not None
    assert await _counters(database_url) == [(2 * PRICE, 0)]
