"""Running jobs: what a worker (``queue/worker.py``) asks of the queue, and how a job ends.

A worker claims only as many jobs of a model as that model's line (``services/lanes.py``) has
room for in this process, so a claimed job starts at once and jobs start in queue order. A job
runs as the API key that submitted it, through ``GenerationService.generate`` (limits, budget,
cache, single-flight, router, storage, record), and its success is written with its generation
in one transaction. How each failure ends the job:

- canceled while running, or its lease taken by another worker: the result is discarded
  (``JobSuperseded``: nothing recorded, nothing charged), the job ends ``canceled``;
- a rate limit that clears within ``max_rate_limit_wait_seconds``: back to the queue until then,
  without spending an attempt;
- the database unreachable (``DatabaseUnavailable``): back to the queue without spending an
  attempt, for any worker to run again once the database is back;
- a retryable failure (provider outage, timeout) while attempts are left: back to the queue
  after ``retry_base_seconds * 4^(attempt-1)``;
- anything else, or attempts used up: ``failed`` with the error in the OpenAI shape.

An end that cannot be written because the database is down is tried again until it is back:
the worker keeps the job (and renews its lease) meanwhile, so a job claimed before an outage
ends exactly once after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from imagegate.errors import (
    AuthenticationFailed,
    DatabaseUnavailable,
    ImagegateError,
    JobSuperseded,
    RateLimited,
    Unavailable,
)
from imagegate.models import Job, JobError, JobLink
from imagegate.queue.base import JobQueue, Recovery, Renewal
from imagegate.services.caching import CacheMode
from imagegate.services.generations import GenerationService
from imagegate.services.jobs import Broadcast
from imagegate.services.keys import KeyService
from imagegate.services.lanes import ModelLanes, QueueWatch

log = logging.getLogger(__name__)

END_RETRY_FIRST_SECONDS = 0.2
END_RETRY_MAX_SECONDS = 5.0
"""How often a job's end is tried again while the database is down (doubling up to this)."""


class JobRuns:
    def __init__(
        self,
        queue: JobQueue,
        generations: GenerationService,
        keys: KeyService,
        lanes: ModelLanes,
        changes: Broadcast,
        *,
        lease_seconds: float,
        retry_base_seconds: float,
        max_rate_limit_wait_seconds: float,
    ) -> None:
        self._queue = queue
        self._generations = generations
        self._keys = keys
        self._lanes = lanes
        self._changes = changes
        self.lease_seconds = lease_seconds
        self._retry_base = retry_base_seconds
        self._max_rate_wait = max_rate_limit_wait_seconds
        self._not_started: Counter[str] = Counter()
        """Jobs claimed here that have not yet taken their place in their model's line."""
        self._next_model = 0
        self._background: set[asyncio.Task[None]] = set()

    async def claim(self, owner: str, free: int) -> list[Job]:
        """Up to ``free`` jobs for this worker, from models whose line has room here."""
        now = datetime.now(UTC)
        models = await self._queue.waiting_models(now)
        claimed: list[Job] = []
        if not models:
            return claimed
        # Start from a different model each time, so a busy model cannot starve the others.
        self._next_model = (self._next_model + 1) % len(models)
        for model in models[self._next_model :] + models[: self._next_model]:
            room = min(free - len(claimed), self._room(model))
            if room <= 0:
                continue
            jobs = await self._queue.claim(owner, model, room, self._lease_until(), now)
            self._not_started[model] += len(jobs)
            claimed.extend(jobs)
            if len(claimed) >= free:
                break
        if claimed:
            self._changes.notify()
        return claimed

    def _room(self, model: str) -> int:
        return self._lanes.room(model) - self._not_started[model]

    async def execute(self, job: Job, owner: str) -> None:
        """Run ``job`` to its end (or back to the queue); never raises but for cancellation."""
        started = False
        # The claim wrote the first stage; set_stage writes only a change.
        first = "enhancing" if job.request.enhance_prompt else "generating"
        set_stage = self._stage_writer(job.id, owner, first)

        def on_start() -> None:
            nonlocal started
            if not started:
                started = True
                self._not_started[job.model] -= 1

        def leave_line() -> None:
            on_start()
            set_stage(first)  # a write only if it had to wait

        # Claims take only what has room, so waiting is rare (the key's own slots are full):
        # only then is the stage worth a write, and again when it starts.
        watch = QueueWatch(
            on_position=lambda _: set_stage("waiting"),
            on_start=leave_line,
            on_enhancing=lambda: set_stage("enhancing"),
            on_generating=lambda: set_stage("generating"),
        )
        try:
            if job.key_id is None:
                raise AuthenticationFailed("A job must be submitted with an API key.")
            principal = await self._keys.principal_for_key(job.key_id)
            await self._generations.generate(
                principal,
                job.request,
                CacheMode(job.cache_mode),
                watch=watch,
                job=JobLink(job.id, owner),
            )
        except JobSuperseded:
            await self._end(job, partial(self._queue.mark_canceled, job.id, owner, _now()))
        except DatabaseUnavailable as exc:
            # Not the job's doing (like a rate limit): back to the queue without spending an
            # attempt, as soon as the database can be told.
            run_after = _now() + timedelta(seconds=exc.retry_after or 0)
            requeue = partial(self._queue.retry_later, job.id, owner, run_after)
            await self._end(job, partial(requeue, count_attempt=False))
        except ImagegateError as exc:
            await self._end(job, partial(self._after_failure, job, owner, exc))
        except Exception as exc:  # a bug: the job fails with it, the worker goes on
            log.exception("job %s failed unexpectedly", job.id)
            error = JobError("internal_error", f"Internal error ({type(exc).__name__}).")
            await self._end(job, partial(self._queue.fail, job.id, owner, error, _now()))
        finally:
            on_start()
            self._changes.notify()

    def _stage_writer(self, job_id: str, owner: str, claimed: str) -> Callable[[str], None]:
        """Writes of one job's stage (``claimed`` as the claim wrote it), each only when it
        changes, in the background but in order: a later stage never lands before an earlier
        one."""
        last: asyncio.Task[None] | None = None
        current = claimed

        def set_stage(stage: str) -> None:
            nonlocal last, current
            if stage == current:
                return
            current, before = stage, last

            async def write() -> None:
                if before is not None:
                    await asyncio.wait([before])  # its outcome is its own
                await self._queue.set_stage(job_id, owner, stage)

            last = self._in_background(write())

        return set_stage

    async def _end(self, job: Job, write: Callable[[], Awaitable[object]]) -> None:
        """Write how ``job`` ended, waiting for the database if it is down: the job stays this
        worker's (its lease renewed) until then, so it ends once, here, and is not lost. If
        the outage outlasts the lease, another worker may run it again: the write then
        finds the job no longer this worker's and changes nothing."""
        pause = END_RETRY_FIRST_SECONDS
        while True:
            try:
                await write()
                return
            except DatabaseUnavailable:
                log.warning("job %s: database unavailable, will record its end when it is back",
                            job.id)  # fmt: skip
            await asyncio.sleep(pause)
            pause = min(pause * 2, END_RETRY_MAX_SECONDS)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        async def hint() -> None:
            with contextlib.suppress(Unavailable):  # a stage is a hint: not worth a retry
                await work

        task = asyncio.create_task(hint())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _: self._changes.notify())
        return task

    async def _after_failure(self, job: Job, owner: str, exc: ImagegateError) -> None:
        now = datetime.now(UTC)
        wait = exc.retry_after
        if isinstance(exc, RateLimited) and wait is not None and wait <= self._max_rate_wait:
            run_after = now + timedelta(seconds=wait)
            await self._queue.retry_later(job.id, owner, run_after, count_attempt=False)
            return
        if exc.retryable and job.attempts < job.max_attempts:
            backoff = self._retry_base * 4 ** (job.attempts - 1)
            run_after = now + timedelta(seconds=max(backoff, wait or 0))
            await self._queue.retry_later(job.id, owner, run_after, count_attempt=True)
            return
        error = JobError(exc.code, _with_retry_hint(exc), exc.type, exc.param)
        await self._queue.fail(job.id, owner, error, now)

    async def canceled(self, job: Job, owner: str) -> None:
        """The worker stopped ``job`` because someone canceled it."""
        await self._queue.mark_canceled(job.id, owner, datetime.now(UTC))
        self._changes.notify()

    async def release(self, job: Job, owner: str) -> None:
        """Put a job back at its place in the queue (the worker is shutting down)."""
        now = datetime.now(UTC)
        await self._queue.retry_later(job.id, owner, now, count_attempt=False)
        self._changes.notify()

    async def renew(self, owner: str, job_ids: Sequence[str]) -> Renewal:
        return await self._queue.renew(owner, job_ids, self._lease_until())

    async def recover(self) -> Recovery:
        recovered = await self._queue.recover_expired(datetime.now(UTC))
        if recovered.requeued or recovered.failed or recovered.canceled:
            log.warning(
                "jobs of a lost worker: %d back in the queue, %d failed, %d canceled",
                recovered.requeued,
                recovered.failed,
                recovered.canceled,
            )
            self._changes.notify()
        return recovered

    def _lease_until(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.lease_seconds)


def _with_retry_hint(exc: ImagegateError) -> str:
    """The message a failed job keeps: a job error has no ``Retry-After``, so a wait the
    failure knows of (a provider's 429 beyond the job's patience) is said in words."""
    if exc.retry_after is None or "try again in" in exc.message.lower():
        return exc.message
    return f"{exc.message.rstrip('.')}. Try again in {math.ceil(exc.retry_after)}s."


def _now() -> datetime:
    return datetime.now(UTC)
