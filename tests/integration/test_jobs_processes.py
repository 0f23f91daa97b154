"""Worker processes on PostgreSQL: every job claimed once, and a worker killed with SIGKILL
loses nothing and doubles nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault
from tests.support.db import fetch_rows
from tests.support.processes import WorkerProcess, openai_provider, start_gateways

BODY = {"model": "gpt-image-1", "size": "1024x1024", "quality": "low"}


@pytest.fixture
def upstream() -> Iterator[tuple[FakeState, str]]:
    state = FakeState()
    with FakeServer(build_openai_fake(state)) as server:
        yield state, server.base_url


def _env(database_url: str, lease_seconds: int) -> dict[str, str]:
    """Short leases so a killed worker's jobs come back soon; not so short that a worker busy
    on two shared cores misses its renewal (which would run a job twice, as designed)."""
    return {
        "IMAGEGATE_DATABASE__URL": database_url,
        "IMAGEGATE_JOBS__EMBEDDED_WORKERS": "false",
        "IMAGEGATE_JOBS__LEASE_SECONDS": str(lease_seconds),
        "IMAGEGATE_JOBS__POLL_SECONDS": "0.1",
        "IMAGEGATE_CACHE__FLIGHT_LEASE_SECONDS": "3",
        "IMAGEGATE_LIMITS__REQUESTS_PER_MINUTE": "0",
        "IMAGEGATE_LIMITS__IMAGES_PER_MINUTE": "0",
        "IMAGEGATE_LIMITS__CONCURRENT_GENERATIONS": "0",
    }


async def _submit(base_url: str, key: str, count: int) -> list[str]:
    """``count`` jobs with distinct prompts, as batches of 100."""
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        for start in range(0, count, 100):
            prompts = [f"job {i}" for i in range(start, min(start + 100, count))]
            response = await client.post(
                "/v1/batches",
                json={"request": BODY, "prompts": prompts, "concurrency": 100},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert response.status_code == 202, response.text
            ids.extend(job["id"] for job in response.json()["jobs"])
    return ids


async def _wait_until_finished(database_url: str, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        [(done,)] = await fetch_rows(
            database_url,
            "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed', 'canceled')",
        )
        if done == count:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{done} of {count} jobs finished in {seconds}s")


def _workers(
    tmp_path: Path, env: dict[str, str], count: int, concurrency: int
) -> list[WorkerProcess]:
    env = {**env, "IMAGEGATE_CONFIG_FILE": str(tmp_path / "imagegate.yaml")}
    return [
        WorkerProcess(tmp_path / "data", env, f"worker-{i}", concurrency).start()
        for i in range(count)
    ]


async def test_a_thousand_jobs_over_four_workers_are_each_claimed_once(
    tmp_path: Path, upstream: tuple[FakeState, str], postgres_database: str
) -> None:
    state, url = upstream
    env = _env(postgres_database, lease_seconds=30)
    (gateway,), key = start_gateways(tmp_path, {"providers": openai_provider(url)}, **env)
    workers: list[WorkerProcess] = []
    try:
        ids = await _submit(gateway.base_url, key, 1000)
        workers = _workers(tmp_path, env, 4, concurrency=8)
        await _wait_until_finished(postgres_database, 1000, 120)
    finally:
        for worker in workers:
            worker.stop()
        gateway.stop()
    prompts = Counter(json.loads(call.body)["prompt"] for call in state.calls)
    assert len(prompts) == 1000
    assert set(prompts.values()) == {1}  # one upstream call per job
    rows = await fetch_rows(postgres_database, "SELECT status, attempts, lease_owner FROM jobs")
    assert Counter((status, attempts) for status, attempts, _ in rows) == {("succeeded", 1): 1000}
    [(generations, distinct)] = await fetch_rows(
        postgres_database, "SELECT count(*), count(DISTINCT generation_id) FROM jobs"
    )
    assert (generations, distinct) == (1000, 1000)
    assert len(ids) == 1000


async def test_a_worker_killed_mid_run_loses_and_doubles_nothing(
    tmp_path: Path, upstream: tuple[FakeState, str], postgres_database: str
) -> None:
    state, url = upstream
    state.faults.random(1.0, [Fault.latency(0.05)])
    env = _env(postgres_database, lease_seconds=5)
    (gateway,), key = start_gateways(tmp_path, {"providers": openai_provider(url)}, **env)
    workers: list[WorkerProcess] = []
    try:
        await _submit(gateway.base_url, key, 500)
        workers = _workers(tmp_path, env, 2, concurrency=8)
        while True:
            [(done,)] = await fetch_rows(
                postgres_database, "SELECT count(*) FROM jobs WHERE status = 'succeeded'"
            )
            if done >= 100:
                break
            await asyncio.sleep(0.05)
        workers[0].kill()
        orphans = await fetch_rows(
            postgres_database,
            "SELECT id FROM jobs WHERE status = 'running' AND lease_owner = 'worker-0'",
        )  # what it had in its hands when it died
        await _wait_until_finished(postgres_database, 500, 120)
    finally:
        for worker in workers:
            worker.stop()
        gateway.stop()
    assert orphans
    statuses = await fetch_rows(
        postgres_database, "SELECT status, count(*) FROM jobs GROUP BY status"
    )
    assert statuses == [("succeeded", 500)]
    [(jobs_done, distinct_generations)] = await fetch_rows(
        postgres_database, "SELECT count(*), count(DISTINCT generation_id) FROM jobs"
    )
    assert (jobs_done, distinct_generations) == (500, 500)
    # every generation recorded is one job's: nothing made twice, nothing charged twice
    [(generations, images, charged)] = await fetch_rows(
        postgres_database,
        "SELECT count(*), (SELECT count(*) FROM images), sum(cost_micro_usd) FROM generations",
    )
    [(unit,)] = await fetch_rows(
        postgres_database, "SELECT min(cost_micro_usd) FROM generations WHERE cost_micro_usd > 0"
    )
    assert (generations, images) == (500, 500)
    assert charged == 500 * unit
    ids = "', '".join(str(row[0]) for row in orphans)
    taken_over = await fetch_rows(
        postgres_database, f"SELECT status, attempts FROM jobs WHERE id IN ('{ids}')"
    )
    assert set(taken_over) == {("succeeded", 2)}  # run again by the other worker, once


async def test_sigterm_puts_unfinished_jobs_back_and_exits_cleanly(
    tmp_path: Path, upstream: tuple[FakeState, str], postgres_database: str
) -> None:
    state, url = upstream
    state.faults.random(1.0, [Fault.latency(30)])  # nothing finishes before the deadline
    env = {**_env(postgres_database, lease_seconds=30), "IMAGEGATE_JOBS__SHUTDOWN_SECONDS": "1"}
    (gateway,), key = start_gateways(tmp_path, {"providers": openai_provider(url)}, **env)
    try:
        await _submit(gateway.base_url, key, 3)
        (worker,) = _workers(tmp_path, env, 1, concurrency=2)
        for _ in range(600):  # until both of its jobs are at the provider
            if len(state.calls) >= 2:
                break
            await asyncio.sleep(0.05)
        assert worker.terminate(timeout=20) == 0
    finally:
        gateway.stop()
    rows = await fetch_rows(
        postgres_database, "SELECT status, attempts, lease_owner FROM jobs ORDER BY id"
    )
    assert rows == [("queued", 0, None)] * 3  # back in line, no attempt spent, no lease held
