"""Job transitions written inside other transactions.

A job's success is written in the same transaction as the generation that answers it
(``db/generations.py``), so a job never ends without its result and a result is never recorded
twice for one job. Every transition that the job's webhook subscribes to adds its delivery to
the outbox (``webhook_deliveries``) in that same transaction: a webhook is never lost to a
crash between the change and the send. ``queue/sql.py`` uses the same statements.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from imagegate.db.tables import Timestamp, batches, jobs, webhook_deliveries
from imagegate.errors import JobSuperseded
from imagegate.models import JobLink, JobStatus, new_id

WEBHOOK_EVENT_OF_STATUS = {
    JobStatus.RUNNING: "start",
    JobStatus.SUCCEEDED: "completed",
    JobStatus.FAILED: "completed",
    JobStatus.CANCELED: "completed",
}

_RETURNED = (jobs.c.id, jobs.c.batch_id, jobs.c.webhook_url, jobs.c.webhook_events)


def owned_running(job_id: str, owner: str) -> sa.ColumnElement[bool]:
    """The job is still this worker's to finish: running, leased to it, not being canceled."""
    return sa.and_(
        jobs.c.id == job_id,
        jobs.c.status == JobStatus.RUNNING.value,
        jobs.c.lease_owner == owner,
        jobs.c.cancel_requested_at.is_(None),
    )


def _param(name: str, type_: sa.types.TypeEngine[Any] | None = None) -> sa.BindParameter[Any]:
    return sa.bindparam(f"p_{name}", type_=type_)


# Built once: on a worker's path, building the statement each time cost more than running it.
_END_OWNED = (
    jobs.update()
    .where(
        jobs.c.id == _param("id"),
        jobs.c.status == JobStatus.RUNNING.value,
        jobs.c.lease_owner == _param("owner"),
    )
    .values(
        status=_param("status"),
        lease_owner=None,
        lease_expires_at=None,
        stage=None,
        finished_at=_param("finished_at", Timestamp),
        run_after=sa.func.coalesce(
            _param("run_after", sa.DateTime(timezone=True)), jobs.c.run_after
        ),
        attempts=jobs.c.attempts - _param("uncount", sa.Integer()),
        error_code=_param("error_code"),
        error_type=_param("error_type"),
        error_param=_param("error_param"),
        error_message=_param("error_message"),
    )
    .returning(*_RETURNED)
)


def end_owned(
    conn: Connection,
    job_id: str,
    owner: str,
    status: JobStatus,
    now: datetime,
    *,
    run_after: datetime | None = None,
    uncount: bool = False,
    error: tuple[str, str, str | None, str] | None = None,
) -> bool:
    """End (or requeue, with ``run_after``) one running job still leased to ``owner``; False
    if it is not (any more). ``uncount`` gives back the attempt its claim counted; ``error`` is
    (code, type, param, message)."""
    code, type_, param, message = error or (None, None, None, None)
    rows = list(
        conn.execute(
            _END_OWNED,
            {
                "p_id": job_id,
                "p_owner": owner,
                "p_status": status.value,
                "p_finished_at": now if status.finished else None,
                "p_run_after": run_after,
                "p_uncount": 1 if uncount else 0,
                "p_error_code": code,
                "p_error_type": type_,
                "p_error_param": param,
                "p_error_message": message,
            },
        )
    )
    _after_end(conn, rows, status, now)
    return bool(rows)


def _after_end(conn: Connection, rows: list[sa.Row[Any]], status: JobStatus, now: datetime) -> None:
    batched = [row.batch_id for row in rows if row.batch_id is not None]
    if batched:
        free_batch_places(conn, batched)
    if status.finished and any(row.webhook_url for row in rows):
        queue_webhooks(conn, rows, status, now)


def end_running(
    conn: Connection,
    where: sa.ColumnElement[bool],
    values: dict[str, Any],
    status: JobStatus,
    now: datetime,
) -> list[sa.Row[Any]]:
    """Move the running jobs matching ``where`` to ``status`` (a finished state or back to
    queued): their batches get their places back, their webhooks are queued."""
    rows = list(
        conn.execute(
            jobs.update()
            .where(where)
            .values(status=status.value, lease_owner=None, lease_expires_at=None, **values)
            .returning(*_RETURNED)
        )
    )
    _after_end(conn, rows, status, now)
    return rows


def finish_succeeded(
    conn: Connection, completions: Sequence[tuple[JobLink, str, datetime]]
) -> None:
    """Mark each job of ``(link, generation_id, finished_at)`` succeeded with its generation;
    raises ``JobSuperseded`` (rolling the whole transaction back) if a worker lost its job or
    it is being canceled.

    Rows are locked in one order (jobs by id, then their batches by id) whatever order the
    completions come in, so two such transactions cannot deadlock each other.
    """
    ended: list[sa.Row[Any]] = []
    for link, generation_id, now in sorted(completions, key=lambda c: c[0].job_id):
        rows = list(
            conn.execute(
                jobs.update()
                .where(owned_running(link.job_id, link.owner))
                .values(
                    status=JobStatus.SUCCEEDED.value,
                    lease_owner=None,
                    lease_expires_at=None,
                    generation_id=generation_id,
                    finished_at=now,
                    stage=None,
                )
                .returning(*_RETURNED)
            )
        )
        if not rows:
            raise JobSuperseded(f"job {link.job_id} is no longer this worker's to finish")
        queue_webhooks(conn, rows, JobStatus.SUCCEEDED, now)
        ended.extend(rows)
    free_batch_places(conn, [row.batch_id for row in ended if row.batch_id is not None])


def free_batch_places(conn: Connection, batch_ids: Sequence[str]) -> None:
    """Give back one running place per entry of ``batch_ids``, batches in id order."""
    for batch_id, count in sorted(Counter(batch_ids).items()):
        conn.execute(
            batches.update()
            .where(batches.c.id == batch_id)
            .values(
                running=sa.case((batches.c.running >= count, batches.c.running - count), else_=0)
            )
        )


def queue_webhooks(
    conn: Connection, rows: list[sa.Row[Any]], status: JobStatus, now: datetime
) -> None:
    """Add an outbox delivery for each job in ``rows`` that subscribed to this transition."""
    event = WEBHOOK_EVENT_OF_STATUS[status]
    deliveries = [
        {
            "id": new_id(),
            "job_id": row.id,
            "event": f"job.{status.value}" if event == "completed" else "job.started",
            "url": row.webhook_url,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for row in rows
        if row.webhook_url and event in (row.webhook_events or ())
    ]
    if deliveries:
        conn.execute(webhook_deliveries.insert(), deliveries)
