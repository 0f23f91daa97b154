"""Sending job webhooks from the outbox: signed, retried for up to a day, every attempt logged.

A delivery's body follows the Standard Webhooks payload shape, ``{"type": "job.succeeded",
"timestamp": ..., "data": <the job, as GET /v1/jobs/{id} shows it now>}``: the type names the
transition, the data is the job's current state (for a late retry of ``job.started`` it may
already be finished). It is signed with the secret of the API key that submitted the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from imagegate.queue.base import (
    DeliveryReport,
    JobQueue,
    PendingDelivery,
    WebhookOutbox,
    WebhookTransport,
)
from imagegate.services.documents import job_object
from imagegate.services.jobs import JobService


@dataclass(frozen=True, slots=True)
class _NotSent:
    """A delivery that cannot be made at all (its job or its key's secret is gone)."""

    attempt: int
    error: str
    duration_ms: int = 0
    status: int | None = None
    retryable: bool = False
    delivered: bool = False


class WebhookDeliveries:
    def __init__(
        self,
        outbox: WebhookOutbox,
        transport: WebhookTransport,
        queue: JobQueue,
        jobs: JobService,
        *,
        base_url: str,
        retry_delay: Callable[[int], float | None],
        lease_seconds: float = 60.0,
        batch: int = 20,
    ) -> None:
        self._outbox = outbox
        self._transport = transport
        self._queue = queue
        self._jobs = jobs
        self._base_url = base_url
        self._retry_delay = retry_delay
        self._lease = timedelta(seconds=lease_seconds)
        self._batch = batch

    async def send_due(self, owner: str) -> int:
        """Send what is due now (up to a batch): jobs in parallel, each job's events in the order
        they happened; how many were attempted."""
        now = datetime.now(UTC)
        due = await self._outbox.claim_due(owner, self._batch, now, now + self._lease)
        by_job: dict[str, list[PendingDelivery]] = {}
        for delivery in due:
            by_job.setdefault(delivery.job_id, []).append(delivery)
        await asyncio.gather(*(self._send_in_order(events) for events in by_job.values()))
        return len(due)

    async def _send_in_order(self, deliveries: list[PendingDelivery]) -> None:
        for delivery in deliveries:
            await self._send(delivery)

    async def attempts(self, job_id: str) -> list[tuple[str, int, int | None, str | None]]:
        """Every delivery attempt for ``job_id``: (event, attempt, status, error), in order."""
        return await self._outbox.attempts(job_id)

    async def _send(self, delivery: PendingDelivery) -> None:
        attempt = delivery.attempts + 1
        job = await self._queue.get(delivery.job_id)
        secret = None
        if job is not None and job.key_id is not None:
            secret = await self._queue.webhook_secret(job.key_id)
        report: DeliveryReport
        if job is None or secret is None:
            report = _NotSent(attempt, "the job's API key has no webhook signing secret")
        else:
            payload = {
                "type": delivery.event,
                "timestamp": datetime.now(UTC).isoformat(),
                "data": job_object(await self._jobs.view_of(job), self._base_url),
            }
            body = orjson.dumps(payload)
            report = await self._transport.deliver(
                delivery.url, secret, delivery.id, body, attempt=attempt
            )
        now = datetime.now(UTC)
        retry_at = None
        if not report.delivered and report.retryable:
            delay = self._retry_delay(report.attempt)
            retry_at = None if delay is None else now + timedelta(seconds=delay)
        await self._outbox.record(delivery, report, retry_at, now)
