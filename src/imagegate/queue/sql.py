"""The job queue in SQL: leases, SKIP LOCKED on PostgreSQL, the single writer on SQLite.

A claim is one transaction: pick the next ready jobs of a model in queue order (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL, so concurrent workers take different jobs without waiting for each
other; SQLite runs every write on one thread, so the same statements are atomic there), take a
place in each one's batch (a row update that is itself serialized by the batch row's lock), and
lease them to the worker. Ids sort in creation order, so ``ORDER BY priority DESC, id`` is
priority, then FIFO.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.engine import TransactionRunner
from imagegate.db.job_results import end_owned, end_running, free_batch_places, queue_webhooks
from imagegate.db.tables import api_keys, batches, jobs
from imagegate.models import (
    Batch,
    GenerationRequest,
    Job,
    JobError,
    JobStatus,
    OutputFormat,
    ResponseFormat,
)
from imagegate.queue.base import JobPage, Recovery, Renewal

_QUEUED = JobStatus.QUEUED.value
_RUNNING = JobStatus.RUNNING.value
_REQUEST_FIELDS = tuple(
    f.name for f in dataclasses.fields(GenerationRequest) if f.name not in ("images", "mask")
)


def request_document(request: GenerationRequest) -> dict[str, Any]:
    """A job's request as JSON (jobs carry no uploads: generations only)."""
    return {name: getattr(request, name) for name in _REQUEST_FIELDS}


def _request(document: dict[str, Any]) -> GenerationRequest:
    fields = {k: v for k, v in document.items() if k in _REQUEST_FIELDS}
    if fields.get("output_format"):
        fields["output_format"] = OutputFormat(fields["output_format"])
    fields["response_format"] = ResponseFormat(fields.get("response_format") or "url")
    return GenerationRequest(**fields)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything imagegate writes is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _to_job(row: sa.Row[Any]) -> Job:
    m = row._mapping
    error = None
    if m["error_code"] is not None:
        error = JobError(
            m["error_code"], m["error_message"] or "", m["error_type"], m["error_param"]
        )
    created_at = _aware(m["created_at"])
    assert created_at is not None
    return Job(
        id=m["id"],
        user_id=m["user_id"],
        key_id=m["api_key_id"],
        model=m["model"],
        request=_request(m["request"]),
        cache_mode=m["cache_mode"],
        status=JobStatus(m["status"]),
        created_at=created_at,
        priority=m["priority"],
        attempts=m["attempts"],
        max_attempts=m["max_attempts"],
        started_at=_aware(m["started_at"]),
        finished_at=_aware(m["finished_at"]),
        generation_id=m["generation_id"],
        error=error,
        webhook_url=m["webhook_url"],
        webhook_events=tuple(m["webhook_events"] or ()),
        metadata=m["metadata"],
        batch_id=m["batch_id"],
        cancel_requested=m["cancel_requested_at"] is not None,
        stage=m["stage"],
        lease_owner=m["lease_owner"],
    )


def _job_row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "user_id": job.user_id,
        "api_key_id": job.key_id,
        "batch_id": job.batch_id,
        "model": job.model,
        "request": request_document(job.request),
        "cache_mode": job.cache_mode,
        "status": job.status.value,
        "priority": job.priority,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "run_after": job.created_at,
        "created_at": job.created_at,
        "webhook_url": job.webhook_url,
        "webhook_events": list(job.webhook_events),
        "metadata": job.metadata,
    }


def _first_stage() -> sa.ColumnElement[str]:
    """A claimed job starts at once: with the prompt enhancer if its request asks for it
    (``JobService`` resolves the model's default at submit), else with the provider."""
    asks = jobs.c.request["enhance_prompt"].as_boolean()
    return sa.case((asks.is_(True), "enhancing"), else_="generating")


def _owned(job_id: str, owner: str) -> sa.ColumnElement[bool]:
    return sa.and_(jobs.c.id == job_id, jobs.c.status == _RUNNING, jobs.c.lease_owner == owner)


class SqlJobQueue:
    """``writes`` runs each transaction (the SQLite writer thread, or the async engine);
    reads use the async ``engine``."""

    def __init__(self, engine: AsyncEngine, writes: TransactionRunner) -> None:
        self._engine = engine
        self._writes = writes
        self._postgres = engine.dialect.name == "postgresql"

    async def enqueue(self, new: Sequence[Job], batch: Batch | None = None) -> None:
        def insert(conn: Connection) -> None:
            if batch is not None:
                conn.execute(
                    batches.insert().values(
                        id=batch.id,
                        user_id=batch.user_id,
                        api_key_id=batch.key_id,
                        concurrency=batch.concurrency,
                        running=0,
                        total=len(new),
                        metadata=batch.metadata,
                        created_at=batch.created_at,
                    )
                )
            conn.execute(jobs.insert(), [_job_row(job) for job in new])

        await self._writes(insert)

    async def get(self, job_id: str) -> Job | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).first()
        return None if row is None else _to_job(row)

    async def page(
        self,
        user_id: str | None,
        status: JobStatus | None,
        limit: int,
        before: str | None,
        batch_id: str | None = None,
    ) -> JobPage:
        query = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit + 1)
        if user_id is not None:
            query = query.where(jobs.c.user_id == user_id)
        if status is not None:
            query = query.where(jobs.c.status == status.value)
        if before is not None:
            query = query.where(jobs.c.id < before)
        if batch_id is not None:
            query = query.where(jobs.c.batch_id == batch_id)
        async with self._engine.connect() as conn:
            found = [_to_job(row) for row in await conn.execute(query)]
        more = len(found) > limit
        found = found[:limit]
        return JobPage(found, found[-1].id if more and found else None)

    async def position(self, job: Job) -> int:
        ahead = (
            sa.select(sa.func.count())
            .select_from(jobs)
            .where(
                jobs.c.status == _QUEUED,
                jobs.c.model == job.model,
                sa.or_(
                    jobs.c.priority > job.priority,
                    sa.and_(jobs.c.priority == job.priority, jobs.c.id < job.id),
                ),
            )
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(ahead)).scalar_one()) + 1

    async def waiting_models(self, now: datetime) -> list[str]:
        query = (
            sa.select(jobs.c.model)
            .where(jobs.c.status == _QUEUED, jobs.c.run_after <= now)
            .distinct()
        )
        async with self._engine.connect() as conn:
            return [row.model for row in await conn.execute(query)]

    async def claim(
        self, owner: str, model: str, limit: int, lease_until: datetime, now: datetime
    ) -> list[Job]:
        full = sa.select(batches.c.id).where(batches.c.running >= batches.c.concurrency)
        picked = (
            sa.select(jobs.c.id, jobs.c.batch_id)
            .where(
                jobs.c.model == model,
                jobs.c.status == _QUEUED,
                jobs.c.run_after <= now,
                sa.or_(jobs.c.batch_id.is_(None), jobs.c.batch_id.not_in(full)),
            )
            .order_by(jobs.c.priority.desc(), jobs.c.id)
            .limit(limit)
        )
        if self._postgres:
            picked = picked.with_for_update(skip_locked=True)

        def take(conn: Connection) -> list[Job]:
            candidates = list(conn.execute(picked))
            places = _take_batch_places(
                conn, Counter(r.batch_id for r in candidates if r.batch_id is not None)
            )
            chosen: list[str] = []
            for row in candidates:
                if len(chosen) == limit:
                    break
                if row.batch_id is None or places.get(row.batch_id, 0) > 0:
                    if row.batch_id is not None:
                        places[row.batch_id] -= 1
                    chosen.append(row.id)
            unused = [b for b, left in places.items() for _ in range(left)]
            free_batch_places(conn, unused)  # taken for candidates beyond the limit
            if not chosen:
                return []
            claimed = list(
                conn.execute(
                    jobs.update()
                    .where(jobs.c.id.in_(chosen))
                    .values(
                        status=_RUNNING,
                        stage=_first_stage(),
                        lease_owner=owner,
                        lease_expires_at=lease_until,
                        attempts=jobs.c.attempts + 1,
                        started_at=sa.func.coalesce(jobs.c.started_at, now),
                    )
                    .returning(*jobs.c)
                )
            )
            queue_webhooks(conn, claimed, JobStatus.RUNNING, now)
            return sorted((_to_job(row) for row in claimed), key=lambda j: (-j.priority, j.id))

        return await self._writes(take)

    async def renew(self, owner: str, job_ids: Sequence[str], lease_until: datetime) -> Renewal:
        if not job_ids:
            return Renewal(frozenset(), frozenset())
        mine = sa.and_(
            jobs.c.id.in_(list(job_ids)), jobs.c.status == _RUNNING, jobs.c.lease_owner == owner
        )

        def extend(conn: Connection) -> Renewal:
            rows = list(
                conn.execute(
                    jobs.update()
                    .where(mine)
                    .values(lease_expires_at=lease_until)
                    .returning(jobs.c.id, jobs.c.cancel_requested_at)
                )
            )
            kept = {row.id for row in rows}
            return Renewal(
                cancel_requested=frozenset(
                    row.id for row in rows if row.cancel_requested_at is not None
                ),
                lost=frozenset(set(job_ids) - kept),
            )

        return await self._writes(extend)

    async def set_stage(self, job_id: str, owner: str, stage: str) -> None:
        await self._writes(
            lambda conn: conn.execute(
                jobs.update().where(_owned(job_id, owner)).values(stage=stage)
            )
        )

    async def fail(self, job_id: str, owner: str, error: JobError, now: datetime) -> bool:
        fields = (error.code, error.type, error.param, error.message)
        return await self._writes(
            lambda conn: end_owned(conn, job_id, owner, JobStatus.FAILED, now, error=fields)
        )

    async def retry_later(
        self, job_id: str, owner: str, run_after: datetime, *, count_attempt: bool
    ) -> bool:
        def requeue(conn: Connection) -> bool:
            uncount = not count_attempt
            status = JobStatus.QUEUED
            return end_owned(
                conn, job_id, owner, status, run_after, run_after=run_after, uncount=uncount
            )

        return await self._writes(requeue)

    async def mark_canceled(self, job_id: str, owner: str, now: datetime) -> bool:
        return await self._writes(
            lambda conn: end_owned(conn, job_id, owner, JobStatus.CANCELED, now)
        )

    async def request_cancel(self, job_id: str, now: datetime) -> Job | None:
        def cancel(conn: Connection) -> Job | None:
            queued = list(
                conn.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id, jobs.c.status == _QUEUED)
                    .values(
                        status=JobStatus.CANCELED.value, finished_at=now, cancel_requested_at=now
                    )
                    .returning(*jobs.c)
                )
            )
            if queued:
                queue_webhooks(conn, queued, JobStatus.CANCELED, now)
            else:
                conn.execute(
                    jobs.update()
                    .where(
                        jobs.c.id == job_id,
                        jobs.c.status == _RUNNING,
                        jobs.c.cancel_requested_at.is_(None),
                    )
                    .values(cancel_requested_at=now)
                )
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
            return None if row is None else _to_job(row)

        return await self._writes(cancel)

    async def recover_expired(self, now: datetime) -> Recovery:
        expired = sa.and_(jobs.c.status == _RUNNING, jobs.c.lease_expires_at < now)
        asked = jobs.c.cancel_requested_at.is_not(None)
        used_up = jobs.c.attempts >= jobs.c.max_attempts

        def recover(conn: Connection) -> Recovery:
            canceled = end_running(
                conn, sa.and_(expired, asked), {"finished_at": now, "stage": None},
                JobStatus.CANCELED, now,
            )  # fmt: skip
            failed = end_running(
                conn,
                sa.and_(expired, used_up),
                {
                    "finished_at": now,
                    "stage": None,
                    "error_code": "worker_lost",
                    "error_type": "server_error",
                    "error_param": None,
                    "error_message": "The worker running this job stopped (it was restarted or "
                    "killed) on every attempt.",
                },
                JobStatus.FAILED,
                now,
            )
            requeued = end_running(conn, expired, {"stage": None}, JobStatus.QUEUED, now)
            return Recovery(len(requeued), len(failed), len(canceled))

        return await self._writes(recover)

    async def get_batch(self, batch_id: str) -> Batch | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(batches).where(batches.c.id == batch_id))).first()
            if row is None:
                return None
            ids = await conn.execute(
                sa.select(jobs.c.id).where(jobs.c.batch_id == batch_id).order_by(jobs.c.id)
            )
            created_at = _aware(row.created_at)
            assert created_at is not None
            return Batch(
                id=row.id,
                user_id=row.user_id,
                key_id=row.api_key_id,
                created_at=created_at,
                concurrency=row.concurrency,
                job_ids=tuple(r.id for r in ids),
                metadata=row.metadata,
            )

    async def batch_counts(self, batch_id: str) -> dict[JobStatus, int]:
        query = (
            sa.select(jobs.c.status, sa.func.count())
            .where(jobs.c.batch_id == batch_id)
            .group_by(jobs.c.status)
        )
        async with self._engine.connect() as conn:
            return {JobStatus(status): int(n) for status, n in await conn.execute(query)}

    async def depths(self) -> dict[str, dict[JobStatus, int]]:
        query = (
            sa.select(jobs.c.model, jobs.c.status, sa.func.count())
            .where(jobs.c.status.in_([_QUEUED, _RUNNING]))
            .group_by(jobs.c.model, jobs.c.status)
        )
        found: dict[str, dict[JobStatus, int]] = {}
        async with self._engine.connect() as conn:
            for model, status, n in await conn.execute(query):
                found.setdefault(model, {})[JobStatus(status)] = int(n)
        return found

    async def webhook_secret(self, key_id: str) -> str | None:
        query = sa.select(api_keys.c.webhook_secret).where(api_keys.c.id == key_id)
        async with self._engine.connect() as conn:
            secret: str | None = (await conn.execute(query)).scalar_one_or_none()
        return secret


def _take_batch_places(conn: Connection, wanted: Counter[str]) -> dict[str, int]:
    """Running places for up to ``wanted[batch]`` more jobs of each batch, as many as its
    concurrency leaves; batches in id order (the lock order every transaction uses)."""
    given: dict[str, int] = {}
    for batch_id, count in sorted(wanted.items()):
        row = conn.execute(
            sa.select(batches.c.running, batches.c.concurrency)
            .where(batches.c.id == batch_id)
            .with_for_update()
        ).first()
        take = 0 if row is None else max(0, min(count, row.concurrency - row.running))
        if take:
            conn.execute(
                batches.update()
                .where(batches.c.id == batch_id)
                .values(running=batches.c.running + take)
            )
        given[batch_id] = take
    return given
