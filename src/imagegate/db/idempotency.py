"""Idempotency keys in SQL: one row per (user, key), claimed by an INSERT.

The primary key is the lock. Claiming reads the row first (a replay needs nothing more); if
there is none, or only a stale one (expired, or running so long that its process must be dead),
it deletes the stale row and inserts a running one in one transaction. When another claimant got
there first the insert violates the primary key and the claim reads again, now finding theirs.
That needs no dialect-specific upsert and is race-free on SQLite (one writer at a time) and on
PostgreSQL (a concurrent insert of the same key waits for the first to commit, then fails).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.base import IdempotencyRecord
from imagegate.db.tables import idempotency_keys

RUNNING = "running"
DONE = "done"

_table = idempotency_keys


def _key(user_id: str, key: str) -> sa.ColumnElement[bool]:
    return sa.and_(_table.c.user_id == user_id, _table.c.key == key)


def _to_record(row: sa.Row[Any]) -> IdempotencyRecord:
    headers = row.response_headers or ()
    return IdempotencyRecord(
        request_hash=row.request_hash,
        claimed_at=_aware(row.created_at),
        status=row.response_status if row.state == DONE else None,
        headers=tuple((str(name), str(value)) for name, value in headers),
        body=row.response_body or b"",
    )


class SqlIdempotencyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(
        self,
        user_id: str,
        key: str,
        request_hash: str,
        claimed_at: datetime,
        expires_at: datetime,
        abandoned_before: datetime,
    ) -> IdempotencyRecord | None:
        stale = sa.or_(
            _table.c.expires_at < claimed_at,
            sa.and_(_table.c.state == RUNNING, _table.c.created_at < abandoned_before),
        )
        insert = _table.insert().values(
            user_id=user_id,
            key=key,
            request_hash=request_hash,
            state=RUNNING,
            created_at=claimed_at,
            expires_at=expires_at,
        )
        while True:
            # Replays are the common case after the first request: a read answers them without
            # a failed insert (which PostgreSQL would also log as an error).
            held = await self.read(user_id, key, claimed_at)
            if held is not None and (
                held.status is not None or held.claimed_at >= abandoned_before
            ):
                return held
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(_table.delete().where(_key(user_id, key), stale))
                    await conn.execute(insert)
                return None
            except IntegrityError:
                continue  # someone claimed it since our read: the next read returns their claim

    async def complete(
        self,
        user_id: str,
        key: str,
        claimed_at: datetime,
        status: int,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                _table.update()
                .where(_key(user_id, key), _table.c.created_at == claimed_at)
                .values(
                    state=DONE,
                    response_status=status,
                    response_headers=[list(pair) for pair in headers],
                    response_body=body,
                )
            )

    async def read(self, user_id: str, key: str, now: datetime) -> IdempotencyRecord | None:
        query = sa.select(_table).where(_key(user_id, key), _table.c.expires_at >= now)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _to_record(row)

    async def delete(self, user_id: str, key: str, claimed_at: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                _table.delete().where(_key(user_id, key), _table.c.created_at == claimed_at)
            )

    async def purge_expired(self, now: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(_table.delete().where(_table.c.expires_at < now))
        return result.rowcount


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything imagegate writes is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
