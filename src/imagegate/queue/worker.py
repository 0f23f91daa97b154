"""The worker loop: claim jobs, run them, keep their leases, stop gracefully.

One ``Worker`` runs up to ``concurrency`` jobs at once, each in its own task. It looks for
work when a job is submitted in this process, when one of its jobs ends, and every
``poll_seconds`` otherwise (jobs submitted to other processes, lines freed by synchronous
requests). Every ``lease_seconds / 3`` it renews the leases of its running jobs; a job
someone canceled, or one whose lease another worker took, is stopped. It also brings back the
jobs of workers that died (their leases expired).

While the database is down it keeps polling (one warning per outage, no crash), its running
jobs wait to record how they ended (``JobRuns``), and it claims again as soon as the database
answers: no restart needed.

``stop()`` (SIGTERM) makes it stop claiming; running jobs get ``shutdown_seconds`` to finish,
then the rest are stopped and put back at their place in the queue for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from imagegate.container import Services
from imagegate.errors import Unavailable
from imagegate.models import Job, new_id
from imagegate.services.job_runs import JobRuns
from imagegate.services.jobs import JobService
from imagegate.services.webhook_deliveries import WebhookDeliveries

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        runs: JobRuns,
        jobs: JobService,
        *,
        concurrency: int,
        poll_seconds: float,
        shutdown_seconds: float,
        name: str | None = None,
        webhooks: WebhookDeliveries | None = None,
        maintenance: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._maintenance = maintenance
        """Periodic clean-up beside the leases (budget holds of dead processes)."""
        self._webhooks = webhooks
        self._runs = runs
        self._jobs = jobs
        self._concurrency = concurrency
        self._poll = poll_seconds
        self._shutdown_seconds = shutdown_seconds
        self.owner = name or f"worker-{new_id()[:12]}"
        self._running: dict[str, tuple[Job, asyncio.Task[None]]] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._database_down = False

    @classmethod
    def for_services(cls, services: Services, name: str | None = None) -> Worker:
        """A worker with the configured concurrency, poll interval and shutdown deadline."""
        jobs = services.settings.jobs
        return cls(
            services.job_runs,
            services.jobs,
            concurrency=jobs.concurrency,
            poll_seconds=jobs.poll_seconds,
            shutdown_seconds=jobs.shutdown_seconds,
            name=name,
            webhooks=services.webhooks,
            maintenance=services.budgets.release_expired,
        )

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Work until ``stop()``; then finish or release the running jobs and return."""
        keeper = asyncio.create_task(self._keep_leases(), name=f"{self.owner}-leases")
        sender = asyncio.create_task(self._send_webhooks(), name=f"{self.owner}-webhooks")
        try:
            while not self._stopping.is_set():
                free = self._concurrency - len(self._running)
                claimed = await self._claim(free) if free > 0 else []
                for job in claimed:
                    self._start(job)
                if not claimed or len(self._running) >= self._concurrency:
                    await self._idle()
        finally:
            await self._drain()
            for task in (keeper, sender):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _claim(self, free: int) -> list[Job]:
        try:
            claimed = await self._runs.claim(self.owner, free)
        except Unavailable as exc:  # the database is down for a moment: try again later
            self._outage(exc)
            return []
        except Exception:
            log.exception("%s could not claim jobs", self.owner)
            return []
        if self._database_down:
            self._database_down = False
            log.warning("%s: database reachable again, claiming jobs", self.owner)
        return claimed

    def _outage(self, exc: Unavailable) -> None:
        """Say once per outage that the database is down (not a traceback every poll)."""
        if not self._database_down:
            self._database_down = True
            log.warning("%s: %s; retrying every %ss", self.owner, exc.message, self._poll)

    async def _idle(self) -> None:
        self._wake.clear()
        submitted = self._jobs.submitted
        waiters = [
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(submitted.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=self._poll, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        submitted.clear()

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(self._runs.execute(job, self.owner), name=job.id)
        self._running[job.id] = (job, task)

        def ended(_: asyncio.Task[None]) -> None:
            self._running.pop(job.id, None)
            self._wake.set()

        task.add_done_callback(ended)

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self._runs.lease_seconds / 3)
            try:
                renewal = await self._runs.renew(self.owner, list(self._running))
                for job_id in renewal.cancel_requested | renewal.lost:
                    await self._stop_job(job_id, canceled=job_id in renewal.cancel_requested)
                await self._runs.recover()
                if self._maintenance is not None:
                    await self._maintenance()
            except Unavailable as exc:
                self._outage(exc)
            except Exception:
                log.exception("%s could not renew its leases", self.owner)

    async def _send_webhooks(self) -> None:
        """Deliver due webhooks: at once while there are more, else every ``poll_seconds``."""
        if self._webhooks is None:
            return
        while True:
            try:
                sent = await self._webhooks.send_due(self.owner)
            except Unavailable as exc:
                self._outage(exc)
                sent = 0
            except Exception:
                log.exception("%s could not send webhooks", self.owner)
                sent = 0
            if not sent:
                await asyncio.sleep(self._poll)

    async def _stop_job(self, job_id: str, *, canceled: bool) -> None:
        entry = self._running.get(job_id)
        if entry is None:
            return
        job, task = entry
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if canceled:
            await self._runs.canceled(job, self.owner)

    async def _drain(self) -> None:
        if not self._running:
            return
        entries = list(self._running.values())
        _, pending = await asyncio.wait(
            [task for _, task in entries], timeout=self._shutdown_seconds
        )
        for task in pending:
            task.cancel()
        for job, task in entries:
            if task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                try:
                    await self._runs.release(job, self.owner)
                except Unavailable as exc:  # its lease expires and another worker takes it
                    log.warning("%s left job %s to its lease: %s", self.owner, job.id, exc.message)
                    continue
                log.warning("%s put job %s back in the queue at shutdown", self.owner, job.id)


@asynccontextmanager
async def embedded_workers(services: Services) -> AsyncIterator[None]:
    """One worker inside this process while the body runs, unless the settings turn it off
    (``IMAGEGATE_JOBS__EMBEDDED_WORKERS=false``, ``imagegate serve --no-workers``)."""
    if not services.settings.jobs.embedded_workers:
        yield
        return
    worker = Worker.for_services(services)
    task = asyncio.create_task(worker.run(), name=worker.owner)
    try:
        yield
    finally:
        worker.stop()
        await task
