"""The durable queue on each database, against a real OpenAI fake: order, positions, cancel,
batch concurrency, retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault

from imagegate.container import Services, build_services
from imagegate.models import GenerationRequest, JobStatus, Principal
from imagegate.queue.worker import Worker
from imagegate.services.jobs import JobOptions
from imagegate.settings import Settings

BODY = {"model": "gpt-image-1", "size": "1024x1024", "quality": "low"}


@pytest.fixture
def upstream() -> Iterator[tuple[FakeState, str]]:
    state = FakeState()
    with FakeServer(build_openai_fake(state)) as server:
        yield state, server.base_url


def _settings(tmp_path: Path, url: str, database_url: str, **openai: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_url="http://img.test",
        database={"url": database_url},
        providers={
            "openai": {"kind": "openai", "base_url": f"{url}/v1", "api_key": "test-key", **openai}
        },
        resilience={"max_attempts": 1},
        limits={"concurrent_generations": 0, "images_per_minute": 0},
        jobs={"retry_base_seconds": 0.2, "lease_seconds": 3},
    )  # type: ignore[arg-type]


@pytest.fixture
async def services(
    upstream: tuple[FakeState, str],
    tmp_path: Path,
    database_url: str,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Services]:
    extra = getattr(request, "param", {})
    async with build_services(_settings(tmp_path, upstream[1], database_url, **extra)) as built:
        yield built


@pytest.fixture
async def alice(services: Services) -> Principal:
    issued = await services.keys.create("alice")
    return await services.keys.authenticate(f"Bearer {issued.secret}")


def _worker(services: Services, concurrency: int = 4) -> Worker:
    return Worker(
        services.job_runs,
        services.jobs,
        concurrency=concurrency,
        poll_seconds=0.05,
        shutdown_seconds=5,
    )


async def _until_finished(services: Services, alice: Principal, ids: list[str]) -> None:
    for job_id in ids:
        view = await services.jobs.wait(alice, job_id, 30)
        assert view.job.status.finished, view.job


def _prompts(state: FakeState) -> list[str]:
    return [json.loads(call.body)["prompt"] for call in state.calls]


@pytest.mark.parametrize("services", [{"max_concurrency": 1}], indirect=True)
async def test_twenty_jobs_start_in_the_order_they_were_queued(
    services: Services, alice: Principal, upstream: tuple[FakeState, str]
) -> None:
    state, _ = upstream
    views = [
        await services.jobs.submit(
            alice, GenerationRequest(prompt=f"job {i}", **BODY), JobOptions()
        )
        for i in range(20)
    ]
    assert [view.position for view in views] == list(range(1, 21))
    last = views[-1].job.id
    positions: list[int] = []
    first_seen = asyncio.Event()

    async def follow() -> None:
        async for view in services.jobs.follow(alice, last, 60):
            if view is not None and view.position is not None:
                positions.append(view.position)
                first_seen.set()

    follower = asyncio.create_task(follow())
    await first_seen.wait()  # it has seen where the job starts from
    worker = _worker(services)
    running = asyncio.create_task(worker.run())
    try:
        await _until_finished(services, alice, [v.job.id for v in views])
        await asyncio.wait_for(follower, 10)
    finally:
        worker.stop()
        await running
    assert _prompts(state) == [f"job {i}" for i in range(20)]
    assert positions[0] == 20
    assert positions == sorted(positions, reverse=True)
    assert len(positions) > 2  # it saw its place go down, not just the start and the end


async def test_canceling_a_running_job_discards_its_result_and_charges_nothing(
    services: Services, alice: Principal, upstream: tuple[FakeState, str]
) -> None:
    state, _ = upstream
    state.faults.next(Fault.latency(3))
    view = await services.jobs.submit(alice, GenerationRequest(prompt="slow", **BODY), JobOptions())
    worker = _worker(services)
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(100):
            if state.calls:
                break
            await asyncio.sleep(0.05)
        canceled = await services.jobs.cancel(alice, view.job.id)
        assert canceled.job.status is JobStatus.RUNNING
        assert canceled.job.cancel_requested
        done = await services.jobs.wait(alice, view.job.id, 10)
    finally:
        worker.stop()
        await running
    assert done.job.status is JobStatus.CANCELED
    assert done.job.generation_id is None
    usage = await services.usage.report(alice)
    assert usage.totals.spend_micro_usd == 0
    assert usage.totals.generated == 0


async def test_a_batch_never_runs_more_jobs_at_once_than_its_concurrency(
    services: Services, alice: Principal, upstream: tuple[FakeState, str]
) -> None:
    state, _ = upstream
    latency = 0.4
    state.faults.random(1.0, [Fault.latency(latency)])
    requests = [GenerationRequest(prompt=f"tile {i}", **BODY) for i in range(6)]
    batch = await services.jobs.submit_batch(alice, requests, JobOptions(), concurrency=2)
    worker = _worker(services, concurrency=6)
    running = asyncio.create_task(worker.run())
    try:
        await _until_finished(services, alice, list(batch.batch.job_ids))
    finally:
        worker.stop()
        await running
    arrivals = sorted(call.at for call in state.calls)
    assert len(arrivals) == 6
    at_once = max(sum(1 for b in arrivals if a <= b < a + latency * 0.9) for a in arrivals)
    assert at_once == 2
    view = await services.jobs.batch(alice, batch.batch.id)
    assert view.counts == {JobStatus.SUCCEEDED: 6}


async def test_a_retryable_failure_runs_again_and_a_final_one_fails_the_job(
    services: Services, alice: Principal, upstream: tuple[FakeState, str]
) -> None:
    state, _ = upstream
    state.faults.next(Fault.error(503))  # first job: one outage, then fine
    flaky = await services.jobs.submit(
        alice, GenerationRequest(prompt="flaky", **BODY), JobOptions()
    )
    worker = _worker(services, concurrency=1)
    running = asyncio.create_task(worker.run())
    try:
        recovered = await services.jobs.wait(alice, flaky.job.id, 20)
        state.faults.next(*(Fault.error(503) for _ in range(3)))
        doomed = await services.jobs.submit(
            alice, GenerationRequest(prompt="doomed", **BODY), JobOptions()
        )
        failed = await services.jobs.wait(alice, doomed.job.id, 20)
        state.faults.next(Fault.safety())
        refused = await services.jobs.submit(
            alice, GenerationRequest(prompt="refused", **BODY), JobOptions()
        )
        policy = await services.jobs.wait(alice, refused.job.id, 20)
    finally:
        worker.stop()
        await running
    assert (recovered.job.status, recovered.job.attempts) == (JobStatus.SUCCEEDED, 2)
    assert (failed.job.status, failed.job.attempts) == (JobStatus.FAILED, 3)
    assert failed.job.error is not None
    assert failed.job.error.code == "upstream_error"  # the provider's 503
    assert (policy.job.status, policy.job.attempts) == (JobStatus.FAILED, 1)
    assert policy.job.error is not None
    assert policy.job.error.code == "content_policy_violation"
