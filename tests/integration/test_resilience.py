"""The router over real HTTP: a flaky or dead provider costs the user neither a failed request
nor a double charge. Two OpenAI fakes on loopback serve one two-target route."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault

from imagegate.container import build_services
from imagegate.errors import ContentPolicyViolation, ImagegateError
from imagegate.models import GenerationRequest, Outcome, Principal
from imagegate.settings import Settings

ROUTE = "resilient"


@dataclass
class Pair:
    primary: FakeState
    backup: FakeState
    primary_url: str
    backup_url: str

    def settings(self, tmp_path: Path, **resilience: float) -> Settings:
        def provider(url: str) -> dict[str, object]:
            return {"kind": "openai", "base_url": f"{url}/v1", "api_key": "test-key",
                    "timeout_seconds": 0.5}  # fmt: skip

        return Settings(
            data_dir=tmp_path / "data",
            public_url="http://img.test",
            providers={"primary": provider(self.primary_url), "backup": provider(self.backup_url)},
            routes={
                ROUTE: [
                    {"model": "gpt-image-1", "provider": "primary"},
                    {"model": "gpt-image-1", "provider": "backup"},
                ]
            },
            resilience={"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05, **resilience},
        )  # type: ignore[arg-type]


@pytest.fixture
def pair() -> Iterator[Pair]:
    primary, backup = FakeState(), FakeState()
    with FakeServer(build_openai_fake(primary)) as p, FakeServer(build_openai_fake(backup)) as b:
        yield Pair(primary, backup, p.base_url, b.base_url)


def _request(i: int) -> GenerationRequest:
    return GenerationRequest(
        prompt=f"a fox, take {i}", model=ROUTE, size="1024x1024", quality="low"
    )


async def _principal(services: object) -> Principal:
    return await services.keys.local_cli_principal()  # type: ignore[attr-defined, no-any-return]


async def test_a_thousand_requests_survive_a_primary_failing_30_percent(
    pair: Pair, tmp_path: Path
) -> None:
    pair.primary.faults.random(
        0.3,
        [Fault.error(429, retry_after=1), Fault.error(503), Fault.hang(5), Fault.reset()],
        seed=7,
    )
    deadline = 10.0
    settings = pair.settings(
        tmp_path,
        deadline_seconds=deadline,
        # keep the primary in play so the retries and fallbacks are what is tested here
        breaker_consecutive_failures=1000,
        breaker_failure_rate=1.0,
    )
    async with build_services(settings) as services:
        principal = await _principal(services)
        gate = asyncio.Semaphore(16)
        latencies: list[float] = []

        async def one(i: int) -> bool:
            async with gate:
                started = time.monotonic()
                try:
                    result = await services.generations.generate(principal, _request(i))
                except ImagegateError:
                    return False
                finally:
                    latencies.append(time.monotonic() - started)
                return result.generation.outcome is Outcome.GENERATED and len(result.images) == 1

        outcomes = await asyncio.gather(*(one(i) for i in range(1000)))
    assert sum(outcomes) >= 999
    assert max(latencies) < deadline + 1
    assert len(pair.primary.calls) >= 1000  # every request tried the primary first
    assert len(pair.backup.calls) > 200  # about 30% of them needed the fallback


async def test_a_content_policy_block_is_returned_after_exactly_one_call(
    pair: Pair, tmp_path: Path
) -> None:
    pair.primary.faults.next(Fault.safety())
    async with build_services(pair.settings(tmp_path)) as services:
        with pytest.raises(ContentPolicyViolation) as caught:
            await services.generations.generate(await _principal(services), _request(0))
    assert caught.value.status == 400
    assert (len(pair.primary.calls), len(pair.backup.calls)) == (1, 0)


async def test_the_breaker_opens_on_an_outage_and_the_route_answers_from_the_fallback(
    pair: Pair, tmp_path: Path
) -> None:
    pair.primary.faults.random(1.0, [Fault.error(503)])
    settings = pair.settings(tmp_path, breaker_consecutive_failures=3, breaker_open_seconds=60)
    async with build_services(settings) as services:
        principal = await _principal(services)
        for i in range(5):
            await services.generations.generate(principal, _request(i))
        calls_after_opening = len(pair.primary.calls)
        report = services.providers.report()
        assert report.targets["primary/gpt-image-1"] == "open"
        fresh = [_request(100 + i) for i in range(20)]  # not answerable from the cache
        results = [await services.generations.generate(principal, r) for r in fresh]
    assert len(pair.primary.calls) == calls_after_opening  # the dead target is not called
    assert all(r.generation.provider == "backup" for r in results)
    assert all(len(r.generation.attempt_log) == 1 for r in results)


async def test_no_request_waits_past_its_deadline(pair: Pair, tmp_path: Path) -> None:
    pair.primary.faults.random(1.0, [Fault.hang(30)])
    pair.backup.faults.random(1.0, [Fault.hang(30)])
    settings = pair.settings(tmp_path, deadline_seconds=1.0)
    settings.providers["primary"].timeout_seconds = 30
    settings.providers["backup"].timeout_seconds = 30
    async with build_services(settings) as services:
        started = time.monotonic()
        with pytest.raises(ImagegateError):
            await services.generations.generate(await _principal(services), _request(0))
        assert time.monotonic() - started < 3


async def test_every_attempt_is_recorded_and_only_the_successful_one_is_charged(
    pair: Pair, tmp_path: Path
) -> None:
    pair.primary.faults.next(Fault.error(503))
    pair.backup.faults.next(Fault.error(502))
    async with build_services(pair.settings(tmp_path)) as services:
        result = await services.generations.generate(await _principal(services), _request(0))
        stored = await services.generations.get(await _principal(services), result.generation.id)
    assert [a.outcome for a in stored.attempt_log] == ["upstream_error", "upstream_error", "ok"]
    assert stored.attempts == 3
    assert stored.provider == "primary"  # retried after the backup failed too
    # gpt-image-1, low, 1024x1024 is about $0.011 (priced from the tokens the fake reports):
    # charged once, for the attempt that made the image, not for the two that failed
    assert stored.cost_micro_usd == result.generation.cost_micro_usd
    assert 9_000 <= stored.cost_micro_usd <= 13_000
