"""The durable job queue's protocol: what ``services/jobs.py`` needs from storage.

One implementation, ``queue/sql.py``, serves SQLite and PostgreSQL; this protocol keeps the
use cases free of SQL and lets a test read the state machine in one place:

    submit ─► queued ─claim─► running ─► succeeded            (with its generation, one txn)
                ▲               │  └───► failed               (final error, or attempts used up)
                │               ├──────► canceled             (cancel asked; result discarded)
                └── retry_later / release / lease expired ◄┘

Every transition a worker makes names the worker (``owner``) and happens only while that worker
still holds the job's lease: a worker that was presumed dead and comes back can no longer change
a job another worker has taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from imagegate.models import Batch, Job, JobError, JobStatus


@dataclass(frozen=True, slots=True)
class Renewal:
    """What a lease renewal learned about the worker's jobs."""

    cancel_requested: frozenset[str]
    """Jobs someone asked to cancel: stop them, then ``mark_canceled``."""
    lost: frozenset[str]
    """Jobs no longer leased to this worker (it was presumed dead): drop their results."""


@dataclass(frozen=True, slots=True)
class Recovery:
    requeued: int
    failed: int
    canceled: int


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


class JobQueue(Protocol):
    async def enqueue(self, jobs: Sequence[Job], batch: Batch | None = None) -> None:
        """Add ``jobs`` (and their ``batch``) in one transaction."""
        ...

    async def get(self, job_id: str) -> Job | None: ...

    async def page(
        self,
        user_id: str | None,
        status: JobStatus | None,
        limit: int,
        before: str | None,
        batch_id: str | None = None,
    ) -> JobPage:
        """Jobs newest first (of ``user_id``, or everyone's for None), after cursor ``before``."""
        ...

    async def position(self, job: Job) -> int:
        """1-based place of a queued job in its model's queue (priority, then FIFO)."""
        ...

    async def waiting_models(self, now: datetime) -> list[str]:
        """Models with at least one job ready to be claimed."""
        ...

    async def claim(
        self, owner: str, model: str, limit: int, lease_until: datetime, now: datetime
    ) -> list[Job]:
        """Take up to ``limit`` ready jobs of ``model`` in queue order (skipping ones another
        worker is taking, and jobs whose batch runs as many as it may), leased to ``owner``."""
        ...

    async def renew(self, owner: str, job_ids: Sequence[str], lease_until: datetime) -> Renewal: ...

    async def set_stage(self, job_id: str, owner: str, stage: str) -> None: ...

    async def fail(self, job_id: str, owner: str, error: JobError, now: datetime) -> bool:
        """End the job as failed; False if it is no longer this worker's."""
        ...

    async def retry_later(
        self, job_id: str, owner: str, run_after: datetime, *, count_attempt: bool
    ) -> bool:
        """Back to the queue until ``run_after``; ``count_attempt=False`` for waits that are
        not the job's fault (a rate limit, a worker shutting down)."""
        ...

    async def mark_canceled(self, job_id: str, owner: str, now: datetime) -> bool: ...

    async def request_cancel(self, job_id: str, now: datetime) -> Job | None:
        """Cancel a queued job at once, or mark a running one for its worker to stop;
        the job as it is now (None if unknown)."""
        ...

    async def recover_expired(self, now: datetime) -> Recovery:
        """Jobs whose worker stopped renewing its lease: back to the queue, or failed once their
        attempts are used up, or canceled if that was asked."""
        ...

    async def get_batch(self, batch_id: str) -> Batch | None: ...

    async def batch_counts(self, batch_id: str) -> dict[JobStatus, int]: ...

    async def depths(self) -> dict[str, dict[JobStatus, int]]:
        """Per model, how many jobs are queued and how many running (everyone's)."""
        ...

    async def webhook_secret(self, key_id: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """A webhook event waiting to be (re)sent; ``id`` is its ``webhook-id``."""

    id: str
    job_id: str
    event: str
    url: str
    attempts: int


class DeliveryReport(Protocol):
    """What one delivery attempt came to (``queue/webhooks.DeliveryResult``)."""

    @property
    def attempt(self) -> int: ...
    @property
    def duration_ms(self) -> int: ...
    @property
    def status(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def retryable(self) -> bool: ...
    @property
    def delivered(self) -> bool: ...


class WebhookTransport(Protocol):
    async def deliver(
        self, url: str, secret: str, event_id: str, body: bytes, *, attempt: int = 1
    ) -> DeliveryReport:
        """One signed POST; never raises for what the receiver or the network does."""
        ...


class WebhookOutbox(Protocol):
    """Webhook events written with the job transitions they announce, sent by workers."""

    async def claim_due(
        self, owner: str, limit: int, now: datetime, lease_until: datetime
    ) -> list[PendingDelivery]:
        """Due deliveries, hidden from other workers until ``lease_until``."""
        ...

    async def record(
        self,
        delivery: PendingDelivery,
        report: DeliveryReport,
        retry_at: datetime | None,
        now: datetime,
    ) -> None:
        """Log the attempt; the delivery ends delivered, or failed when ``retry_at`` is None,
        or waits until ``retry_at``."""
        ...

    async def attempts(self, job_id: str) -> list[tuple[str, int, int | None, str | None]]:
        """(event, attempt, status, error) of every attempt for a job's webhooks, in order."""
        ...
