"""The jobs API's use cases: submit, look, list, follow, cancel, batches.

A job is a generation request put in the durable queue (``queue/base.py``) and run later by a
worker (``services/job_runs.py``) through the same spine as a synchronous call. Everything here
is scoped to the caller: another user's job or batch is a 404, as if it did not exist.

Followers (``follow``, ``wait``) are woken at once by changes made in this process and look at
the database every ``poll_seconds`` for changes made by workers elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from imagegate.errors import InvalidRequest, NotFound
from imagegate.models import (
    Batch,
    Generation,
    GenerationRequest,
    Job,
    JobStatus,
    Principal,
    ResponseFormat,
    job_id_at,
)
from imagegate.queue.base import JobQueue
from imagegate.services.caching import CacheMode
from imagegate.services.generations import DeliveredImage, GenerationService

WEBHOOK_EVENTS = ("start", "completed")
MAX_BATCH_JOBS = 100


class Broadcast:
    """Wakes everyone waiting when anything about jobs changes in this process."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, at_most: float) -> None:
        """Until the next change, or ``at_most`` seconds."""
        event = self._event
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await event.wait()


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as its owner sees it: with its place in line, or its result."""

    job: Job
    position: int | None = None
    generation: Generation | None = None
    images: tuple[DeliveredImage, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchView:
    batch: Batch
    counts: dict[JobStatus, int]
    jobs: tuple[JobView, ...]

    @property
    def finished(self) -> int:
        return sum(n for status, n in self.counts.items() if status.finished)


@dataclass(frozen=True, slots=True)
class JobOptions:
    """What a job adds to a generation request."""

    cache_mode: CacheMode = CacheMode.DEFAULT
    priority: int = 0
    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = WEBHOOK_EVENTS
    metadata: dict[str, object] | None = None


class JobIds:
    """Job and batch ids from a clock that never goes back within this process."""

    def __init__(self) -> None:
        self._last = 0

    def next(self, prefix: str = "job") -> str:
        self._last = max(time.time_ns() // 1000, self._last + 1)
        return job_id_at(self._last, prefix)


class JobService:
    def __init__(
        self,
        queue: JobQueue,
        generations: GenerationService,
        changes: Broadcast,
        *,
        max_attempts: int,
        batch_concurrency: int,
        poll_seconds: float = 1.0,
        check_webhook_url: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        self._check_webhook_url = check_webhook_url
        """Refuses (``UnsafeUrl``) a webhook URL imagegate must not call (the SSRF guard)."""
        self._queue = queue
        self._generations = generations
        self._changes = changes
        self._max_attempts = max_attempts
        self._batch_concurrency = batch_concurrency
        self._poll = poll_seconds
        self._ids = JobIds()
        self.submitted = asyncio.Event()
        """Set when a job is queued here: the embedded worker looks at once."""

    # -- submitting ---------------------------------------------------------------------------

    async def submit(
        self, principal: Principal, request: GenerationRequest, options: JobOptions
    ) -> JobView:
        job = await self._new_job(principal, request, options)
        await self._queue.enqueue([job])
        self._queued()
        return await self.view_of(job)

    async def submit_batch(
        self,
        principal: Principal,
        requests: Sequence[GenerationRequest],
        options: JobOptions,
        concurrency: int | None = None,
    ) -> BatchView:
        if not 1 <= len(requests) <= MAX_BATCH_JOBS:
            raise InvalidRequest(
                f"A batch holds 1 to {MAX_BATCH_JOBS} requests; got {len(requests)}.",
                param="requests",
            )
        batch_id = self._ids.next("batch")
        new = []
        for index, request in enumerate(requests):
            try:
                job = await self._new_job(principal, request, options)
            except InvalidRequest as exc:
                exc.message = f"requests[{index}]: {exc.message}"
                raise
            new.append(replace(job, batch_id=batch_id))
        batch = Batch(
            id=batch_id,
            user_id=principal.user_id,
            key_id=principal.key_id,
            created_at=datetime.now(UTC),
            concurrency=concurrency or self._batch_concurrency,
            job_ids=tuple(job.id for job in new),
            metadata=options.metadata,
        )
        await self._queue.enqueue(new, batch)
        self._queued()
        return await self.batch(principal, batch_id)

    async def _new_job(
        self, principal: Principal, request: GenerationRequest, options: JobOptions
    ) -> Job:
        if request.images or request.mask:
            raise InvalidRequest(
                "Jobs take generation requests only; send edits to /v1/images/edits.",
                param="image",
            )
        spec, normalized = self._generations.resolve(request)  # bad requests: refused now
        if options.webhook_url:
            await self._check_webhook(principal, options.webhook_url)
        unknown = set(options.webhook_events) - set(WEBHOOK_EVENTS)
        if unknown:
            raise InvalidRequest(
                f"Unknown webhook_events {sorted(unknown)}; choose from {list(WEBHOOK_EVENTS)}.",
                param="webhook_events",
            )
        return Job(
            id=self._ids.next(),
            user_id=principal.user_id,
            key_id=principal.key_id,
            model=spec.name,
            # Enhancement resolved now (the model's default, if not asked), so the claim knows
            # the job starts with the prompt enhancer (its first stage).
            request=replace(
                request,
                model=spec.name,
                enhance_prompt=True if normalized.enhance_prompt else request.enhance_prompt,
            ),
            cache_mode=options.cache_mode.value,
            status=JobStatus.QUEUED,
            created_at=datetime.now(UTC),
            priority=options.priority,
            max_attempts=self._max_attempts,
            webhook_url=options.webhook_url,
            webhook_events=tuple(options.webhook_events) if options.webhook_url else (),
            metadata=options.metadata,
        )

    async def _check_webhook(self, principal: Principal, url: str) -> None:
        if principal.key_id is None or await self._queue.webhook_secret(principal.key_id) is None:
            raise InvalidRequest(
                "This API key has no webhook signing secret (it was made before webhooks "
                "existed); create a new key to use webhooks.",
                param="webhook",
            )
        if self._check_webhook_url is not None:
            await self._check_webhook_url(url)

    def _queued(self) -> None:
        self.submitted.set()
        self._changes.notify()

    # -- looking ------------------------------------------------------------------------------

    async def get(self, principal: Principal, job_id: str) -> JobView:
        return await self.view_of(await self._own(principal, job_id))

    async def page(
        self,
        principal: Principal,
        status: JobStatus | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[JobView], str | None]:
        owner = None if principal.is_admin else principal.user_id
        found = await self._queue.page(owner, status, limit, cursor)
        return [await self.view_of(job, with_result=False) for job in found.jobs], found.next_cursor

    async def wait(self, principal: Principal, job_id: str, seconds: float) -> JobView:
        """The job once finished, or as it is after ``seconds``."""
        deadline = time.monotonic() + seconds
        job = await self._own(principal, job_id)
        while not job.status.finished and (left := deadline - time.monotonic()) > 0:
            await self._changes.wait(min(self._poll, left))
            job = await self._own(principal, job_id)
        return await self.view_of(job)

    async def follow(
        self, principal: Principal, job_id: str, idle_seconds: float
    ) -> AsyncIterator[JobView | None]:
        """The job now, then again each time its status, stage or place in line changes,
        ending with its finished state; None after ``idle_seconds`` without a change (for
        keep-alives)."""
        last: tuple[object, ...] | None = None
        quiet_since = time.monotonic()
        while True:
            view = await self.view_of(await self._own(principal, job_id))
            state = (view.job.status, view.job.stage, view.position)
            if state != last:
                last = state
                quiet_since = time.monotonic()
                yield view
            elif time.monotonic() - quiet_since >= idle_seconds:
                quiet_since = time.monotonic()
                yield None
            if view.job.status.finished:
                return
            await self._changes.wait(self._poll)

    async def cancel(self, principal: Principal, job_id: str) -> JobView:
        """Cancel a queued job at once; ask a running one's worker to stop it and discard its
        result. A finished job is returned as it is."""
        job = await self._own(principal, job_id)
        if not job.status.finished:
            job = await self._queue.request_cancel(job.id, datetime.now(UTC)) or job
            self._changes.notify()
        return await self.view_of(job)

    async def batch(self, principal: Principal, batch_id: str) -> BatchView:
        batch = await self._queue.get_batch(batch_id)
        if batch is None or not (principal.is_admin or batch.user_id == principal.user_id):
            raise NotFound(f"No batch {batch_id!r}.", param="batch_id")
        counts = await self._queue.batch_counts(batch_id)
        page = await self._queue.page(None, None, len(batch.job_ids), None, batch_id=batch_id)
        views = [await self.view_of(job) for job in sorted(page.jobs, key=lambda j: j.id)]
        return BatchView(batch, counts, tuple(views))

    async def depths(self, principal: Principal) -> dict[str, dict[JobStatus, int]]:
        """Queued and running jobs per model, everyone's: admins only (404 for others)."""
        if not principal.is_admin:
            raise NotFound("Unknown route.")
        return await self._queue.depths()

    async def _own(self, principal: Principal, job_id: str) -> Job:
        job = await self._queue.get(job_id)
        if job is None or not (principal.is_admin or job.user_id == principal.user_id):
            raise NotFound(f"No job {job_id!r}.", param="job_id")
        return job

    async def view_of(self, job: Job, *, with_result: bool = True) -> JobView:
        if job.status is JobStatus.QUEUED:
            return JobView(job, position=await self._queue.position(job))
        if job.status is not JobStatus.SUCCEEDED or job.generation_id is None:
            return JobView(job)
        generation = await self._generations.record_of(job.generation_id)
        if generation is None or not with_result:
            return JobView(job, generation=generation)
        inline = job.request.response_format is ResponseFormat.B64_JSON
        images = await self._generations.deliver(generation.images, inline=inline)
        return JobView(job, generation=generation, images=images)
