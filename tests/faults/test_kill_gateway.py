"""``kill -9`` of the gateway on the embedded defaults (SQLite, local disk, in-process workers)
with 200 jobs queued and running: after a restart on the same data dir every job ends exactly
once, nothing is made twice beyond the jobs that were running, and disk and records agree."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, Fault
from tests.support.processes import ServerProcess, openai_provider, start_gateways

BODY = {"model": "gpt-image-1", "size": "1024x1024", "quality": "low"}
JOBS = 200
WORKER_CONCURRENCY = 8
ENV = {
    "IMAGEGATE_JOBS__LEASE_SECONDS": "3",
    "IMAGEGATE_JOBS__POLL_SECONDS": "0.1",
    "IMAGEGATE_JOBS__CONCURRENCY": str(WORKER_CONCURRENCY),
    # the killed process's budget holds are given back once they expire (default an hour)
    "IMAGEGATE_BUDGET_HOLD_SECONDS": "8",
    "IMAGEGATE_LIMITS__REQUESTS_PER_MINUTE": "0",
    "IMAGEGATE_LIMITS__IMAGES_PER_MINUTE": "0",
    "IMAGEGATE_LIMITS__CONCURRENT_GENERATIONS": "0",
}


@pytest.fixture
def upstream() -> Iterator[tuple[FakeState, str]]:
    state = FakeState()
    with FakeServer(build_openai_fake(state)) as server:
        yield state, server.base_url


async def _submit(base_url: str, key: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        for i in range(JOBS):
            response = await client.post(
                "/v1/jobs",
                json={**BODY, "prompt": f"job {i}"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert response.status_code == 202, response.text


def _rows(db: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return [tuple(row) for row in conn.execute(query)]


async def _wait_until_finished(db: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        [(done,)] = _rows(
            db, "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed', 'canceled')"
        )
        if done == JOBS:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(_rows(db, "SELECT status, count(*) FROM jobs GROUP BY status"))


async def _wait_until_holds_released(db: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _rows(db, "SELECT count(*) FROM budget_reservations") == [(0,)]:
            return
        await asyncio.sleep(0.5)


async def test_kill_9_mid_queue_then_restart_ends_every_job_once(
    tmp_path: Path, upstream: tuple[FakeState, str]
) -> None:
    state, url = upstream
    state.faults.random(1.0, [Fault.latency(0.3)])  # every job is genuinely in flight a while
    (gateway,), key = start_gateways(
        tmp_path,
        {"providers": openai_provider(url)},
        key_options=["--budget-usd-day", "1000"],
        **ENV,
    )
    db = gateway.data_dir / "imagegate.db"
    try:
        await _submit(gateway.base_url, key)
        for _ in range(1200):  # until some are done, some running, most still queued
            if len(state.calls) >= 20:
                break
            await asyncio.sleep(0.05)
        gateway.kill()
        calls_before = len(state.calls)
        restarted = ServerProcess(gateway.data_dir, env=gateway.extra_env).start()
        try:
            await _wait_until_finished(db, seconds=120)
            await _wait_until_holds_released(db, seconds=30)
        finally:
            restarted.stop()
    finally:
        gateway.stop()

    assert _rows(db, "SELECT status, count(*) FROM jobs GROUP BY status") == [("succeeded", JOBS)]
    [(jobs, distinct_generations)] = _rows(
        db, "SELECT count(*), count(DISTINCT generation_id) FROM jobs"
    )
    assert (jobs, distinct_generations) == (JOBS, JOBS)
    [(succeeded,)] = _rows(db, "SELECT count(*) FROM generations WHERE outcome = 'generated'")
    assert succeeded == JOBS

    # upstream: each prompt called once, except jobs running at the kill (retried once)
    prompts = Counter(json.loads(call.body)["prompt"] for call in state.calls)
    assert set(prompts) == {f"job {i}" for i in range(JOBS)}
    twice = [prompt for prompt, n in prompts.items() if n > 1]
    assert max(prompts.values()) <= 2
    assert len(twice) <= WORKER_CONCURRENCY
    assert len(state.calls) - calls_before <= JOBS

    # storage: every file under a real name is referenced, every reference is a file
    root = gateway.data_dir / "files"
    files = {p.name for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")}
    keys = {str(k) for (k,) in _rows(db, "SELECT storage_key FROM images")}
    keys |= {str(k) for (k,) in _rows(db, "SELECT thumbnail_key FROM images") if k}
    assert keys <= files  # no record points at a missing blob
    assert files <= keys  # no orphan blob

    # budgets: the ledger agrees with the generations table, and nothing is still reserved
    [(charged,)] = _rows(db, "SELECT coalesce(sum(cost_micro_usd), 0) FROM generations")
    [(reserved,)] = _rows(db, "SELECT count(*) FROM budget_reservations")
    assert reserved == 0
    [(spent, held)] = _rows(
        db, "SELECT sum(spent_micro_usd), sum(reserved_micro_usd) FROM budget_counters"
    )
    assert (spent, held) == (charged, 0)
    ledger = dict(_rows(db, "SELECT kind, sum(micro_usd) FROM budget_ledger GROUP BY kind"))
    assert ledger["settle"] == charged
