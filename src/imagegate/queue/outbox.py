"""The webhook outbox in SQL: deliveries are rows written with the job transition they
announce (``db/job_results.py``); a worker claims the due ones with a short lease (``SKIP
LOCKED`` on PostgreSQL), sends them and logs every attempt in ``webhook_attempts``."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.engine import TransactionRunner
from imagegate.db.tables import webhook_attempts, webhook_deliveries
from imagegate.queue.base import DeliveryReport, PendingDelivery

_PENDING = "pending"


class SqlWebhookOutbox:
    def __init__(self, engine: AsyncEngine, writes: TransactionRunner) -> None:
        self._engine = engine
        self._writes = writes
        self._postgres = engine.dialect.name == "postgresql"

    async def claim_due(
        self, owner: str, limit: int, now: datetime, lease_until: datetime
    ) -> list[PendingDelivery]:
        due = (
            sa.select(webhook_deliveries.c.id)
            .where(
                webhook_deliveries.c.status == _PENDING,
                webhook_deliveries.c.next_attempt_at <= now,
            )
            .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.created_at)
            .limit(limit)
        )
        if self._postgres:
            due = due.with_for_update(skip_locked=True)

        def take(conn: Connection) -> list[PendingDelivery]:
            ids = [row.id for row in conn.execute(due)]
            if not ids:
                return []
            rows = conn.execute(
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id.in_(ids))
                .values(lease_owner=owner, next_attempt_at=lease_until)
                .returning(
                    webhook_deliveries.c.id,
                    webhook_deliveries.c.job_id,
                    webhook_deliveries.c.event,
                    webhook_deliveries.c.url,
                    webhook_deliveries.c.attempts,
                )
            )
            found = {
                r.id: PendingDelivery(r.id, r.job_id, r.event, r.url, r.attempts) for r in rows
            }
            return [found[i] for i in ids if i in found]  # RETURNING keeps no order

        return await self._writes(take)

    async def record(
        self,
        delivery: PendingDelivery,
        report: DeliveryReport,
        retry_at: datetime | None,
        now: datetime,
    ) -> None:
        if report.delivered:
            values = {"status": "delivered", "delivered_at": now, "next_attempt_at": None}
        elif retry_at is None:
            values = {"status": "failed", "next_attempt_at": None}
        else:
            values = {"status": _PENDING, "next_attempt_at": retry_at}

        def write(conn: Connection) -> None:
            conn.execute(
                webhook_attempts.insert().values(
                    delivery_id=delivery.id,
                    attempt=report.attempt,
                    status_code=report.status,
                    error=report.error,
                    duration_ms=report.duration_ms,
                    created_at=now,
                )
            )
            conn.execute(
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id == delivery.id)
                .values(attempts=report.attempt, lease_owner=None, **values)
            )

        await self._writes(write)

    async def attempts(self, job_id: str) -> list[tuple[str, int, int | None, str | None]]:
        query = (
            sa.select(
                webhook_deliveries.c.event,
                webhook_attempts.c.attempt,
                webhook_attempts.c.status_code,
                webhook_attempts.c.error,
            )
            .join(webhook_attempts, webhook_attempts.c.delivery_id == webhook_deliveries.c.id)
            .where(webhook_deliveries.c.job_id == job_id)
            .order_by(webhook_attempts.c.id)
        )
        async with self._engine.connect() as conn:
            return [(r.event, r.attempt, r.status_code, r.error) for r in await conn.execute(query)]
