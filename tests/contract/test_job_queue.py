"""One suite for the job queue on every database it runs on: SQLite and PostgreSQL.

Each test drives ``SqlJobQueue`` as workers do (claim, renew, end, recover) and checks the
state machine of ``queue/base.py``: order, exclusivity, leases, cancellation, batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from imagegate.db.engine import AsyncTransactions, SqliteThread, create_engine, upgrade_to_head
from imagegate.db.keys import SqlKeyRepository
from imagegate.models import (
    Batch,
    GenerationRequest,
    Job,
    JobError,
    JobStatus,
    Role,
    job_id_at,
)
from imagegate.queue.sql import SqlJobQueue
from imagegate.settings import DatabaseSettings

MODEL = "builtin"


@pytest.fixture
async def queue(database_url: str) -> AsyncIterator[tuple[SqlJobQueue, str]]:
    """The queue over a migrated database, and a user id its jobs belong to."""
    engine = create_engine(database_url, DatabaseSettings(url=database_url))
    await upgrade_to_head(engine)
    sqlite = database_url.startswith("sqlite")
    runner = (
        SqliteThread(database_url, DatabaseSettings(url=database_url), "writer")
        if sqlite
        else AsyncTransactions(engine)
    )
    user_id, _ = await SqlKeyRepository(engine).ensure_user("alice", Role.USER)
    try:
        yield SqlJobQueue(engine, runner.run), user_id
    finally:
        await runner.aclose()
        await engine.dispose()


_stamp = [int(datetime.now(UTC).timestamp() * 1_000_000)]


def _job(user_id: str, prompt: str, **fields: object) -> Job:
    _stamp[0] += 1
    return Job(
        id=job_id_at(_stamp[0]),
        user_id=user_id,
        key_id=None,
        model=MODEL,
        request=GenerationRequest(prompt=prompt, model=MODEL),
        cache_mode="default",
        status=JobStatus.QUEUED,
        created_at=datetime.now(UTC),
        **fields,  # type: ignore[arg-type]
    )


def _later(seconds: float = 30) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def _claim(queue: SqlJobQueue, owner: str, limit: int, lease: float = 30) -> list[Job]:
    return await queue.claim(owner, MODEL, limit, _later(lease), datetime.now(UTC))


async def test_jobs_are_claimed_by_priority_then_in_the_order_they_came(
    queue: tuple[SqlJobQueue, str],
) -> None:
    jobs, user = queue
    plain = [_job(user, f"plain {i}") for i in range(3)]
    urgent = _job(user, "urgent", priority=5)
    await jobs.enqueue([*plain, urgent])
    assert [await jobs.position(j) for j in plain] == [2, 3, 4]
    assert await jobs.position(urgent) == 1
    claimed = await _claim(jobs, "w1", 10)
    assert [j.request.prompt for j in claimed] == ["urgent", "plain 0", "plain 1", "plain 2"]
    assert {(j.status, j.attempts, j.lease_owner) for j in claimed} == {
        (JobStatus.RUNNING, 1, "w1")
    }
    assert await _claim(jobs, "w2", 10) == []
    assert await jobs.waiting_models(datetime.now(UTC)) == []


async def test_a_claimed_job_starts_with_the_enhancer_only_if_its_request_asks(
    queue: tuple[SqlJobQueue, str],
) -> None:
    jobs, user = queue
    asks = {"yes": True, "no": False, "default": None}
    queued = []
    for prompt, asked in asks.items():
        job = _job(user, prompt)
        queued.append(replace(job, request=replace(job.request, enhance_prompt=asked)))
    await jobs.enqueue(queued)
    claimed = await _claim(jobs, "w1", 10)
    assert {j.request.prompt: j.stage for j in claimed} == {
        "yes": "enhancing",
        "no": "generating",
        "default": "generating",
    }
    for job in claimed:
        stored = await jobs.get(job.id)
        assert stored is not None
        assert stored.stage == job.stage


async def test_concurrent_claims_never_take_the_same_job(queue: tuple[SqlJobQueue, str]) -> None:
    jobs, user = queue
    await jobs.enqueue([_job(user, f"p{i}") for i in range(60)])
    ids: list[str] = []
    while len(ids) < 60:  # workers skip what another is taking: a round may leave some
        claims = await asyncio.gather(*(_claim(jobs, f"w{i}", 7) for i in range(12)))
        ids.extend(job.id for batch in claims for job in batch)
    assert len(ids) == 60
    assert len(set(ids)) == 60


async def test_a_lease_is_the_workers_alone_to_renew_and_end(
    queue: tuple[SqlJobQueue, str],
) -> None:
    jobs, user = queue
    await jobs.enqueue([_job(user, "one")])
    (job,) = await _claim(jobs, "w1", 1)
    renewal = await jobs.renew("w1", [job.id], _later())
    assert (renewal.lost, renewal.cancel_requested) == (frozenset(), frozenset())
    intruder = await jobs.renew("w2", [job.id], _later())
    assert intruder.lost == {job.id}
    error = JobError("upstream_error", "boom")
    assert not await jobs.fail(job.id, "w2", error, datetime.now(UTC))
    assert await jobs.fail(job.id, "w1", error, datetime.now(UTC))
    failed = await jobs.get(job.id)
    assert failed is not None
    assert (failed.status, failed.error, failed.lease_owner) == (JobStatus.FAILED, error, None)
    assert not await jobs.fail(job.id, "w1", error, datetime.now(UTC))  # ends once


async def test_retry_later_puts_a_job_back_at_its_place_after_a_wait(
    queue: tuple[SqlJobQueue, str],
) -> None:
    jobs, user = queue
    first, second = _job(user, "first"), _job(user, "second")
    await jobs.enqueue([first, second])
    (claimed,) = await _claim(jobs, "w1", 1)
    assert claimed.id == first.id
    soon = datetime.now(UTC) + timedelta(milliseconds=300)
    assert await jobs.retry_later(first.id, "w1", soon, count_attempt=False)
    (next_up,) = await _claim(jobs, "w1", 1)
    assert next_up.id == second.id  # the first waits out its delay
    await asyncio.sleep(0.4)
    (again,) = await _claim(jobs, "w1", 1)
    assert (again.id, again.attempts) == (first.id, 1)  # the wait spent no attempt


async def test_expired_leases_come_back_then_fail_once_attempts_are_used_up(
    queue: tuple[SqlJobQueue, str],
) -> None:
    jobs, user = queue
    await jobs.enqueue([_job(user, "fragile", max_attempts=2)])
    for attempt in (1, 2):
        (job,) = await _claim(jobs, f"dead-{attempt}", 1, lease=0.05)
        assert job.attempts == attempt
        await asyncio.sleep(0.1)
        recovered = await jobs.recover_expired(datetime.now(UTC))
        assert (recovered.requeued, recovered.failed) == ((1, 0) if attempt == 1 else (0, 1))
    final = await jobs.get(job.id)
    assert final is not None
    assert final.status is JobStatus.FAILED
    assert final.error is not None
    assert final.error.code == "worker_lost"


async def test_cancel_ends_a_queued_job_and_marks_a_running_one(
    queue: tuple[SqlJobQueue, str],
) -> None:
    jobs, user = queue
    running, queued = _job(user, "running"), _job(user, "queued")
    await jobs.enqueue([running, queued])
    await _claim(jobs, "w1", 1)
    now = datetime.now(UTC)
    canceled = await jobs.request_cancel(queued.id, now)
    assert canceled is not None
    assert canceled.status is JobStatus.CANCELED
    marked = await jobs.request_cancel(running.id, now)
    assert marked is not None
    assert (marked.status, marked.cancel_requested) == (JobStatus.RUNNING, True)
    renewal = await jobs.renew("w1", [running.id], _later())
    assert renewal.cancel_requested == {running.id}
    assert await jobs.mark_canceled(running.id, "w1", datetime.now(UTC))
    ended = await jobs.get(running.id)
    assert ended is not None
    assert ended.status is JobStatus.CANCELED
    assert await _claim(jobs, "w1", 5) == []


async def test_a_batch_never_runs_more_than_its_concurrency_across_workers(
    queue: tuple[SqlJobQueue, str],
) -> None:
    jobs, user = queue
    batch = Batch(id=job_id_at(_stamp[0] + 10_000, "batch"), user_id=user, key_id=None,
                  created_at=datetime.now(UTC), concurrency=2)  # fmt: skip
    members = [replace(_job(user, f"b{i}"), batch_id=batch.id) for i in range(5)]
    loose = _job(user, "loose")
    await jobs.enqueue(members, batch)
    await jobs.enqueue([loose])
    claims = await asyncio.gather(*(_claim(jobs, f"w{i}", 3) for i in range(4)))
    claimed = [job for claim in claims for job in claim]
    assert sum(1 for job in claimed if job.batch_id == batch.id) == 2
    assert loose.id in {job.id for job in claimed}  # a full batch holds up nobody else
    first = next(job for job in claimed if job.batch_id == batch.id)
    assert await jobs.fail(first.id, first.lease_owner or "", JobError("x", "x"), _later(0))
    (next_member,) = await _claim(jobs, "w9", 3)
    assert next_member.batch_id == batch.id
    counts = await jobs.batch_counts(batch.id)
    assert counts == {JobStatus.FAILED: 1, JobStatus.RUNNING: 2, JobStatus.QUEUED: 2}


async def test_pages_go_newest_first_and_stop(queue: tuple[SqlJobQueue, str]) -> None:
    jobs, user = queue
    made = [_job(user, f"p{i}") for i in range(5)]
    await jobs.enqueue(made)
    first = await jobs.page(user, None, 2, None)
    assert [j.id for j in first.jobs] == [made[4].id, made[3].id]
    second = await jobs.page(user, None, 2, first.next_cursor)
    third = await jobs.page(user, None, 2, second.next_cursor)
    assert [j.id for j in second.jobs + third.jobs] == [made[2].id, made[1].id, made[0].id]
    assert third.next_cursor is None
    assert (await jobs.page("someone-else", None, 10, None)).jobs == []
