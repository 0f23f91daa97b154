"""What cleanup reads from and removes in the database: which blobs the image records use,
expired cache entries; images past the retention period are read from ``blob_uses``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.base import BlobUse
from imagegate.db.engine import TransactionRunner
from imagegate.db.tables import cache_entries, images

_USES = sa.select(
    images.c.id, images.c.storage_key, images.c.thumbnail_key, images.c.created_at, images.c.pinned
)


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything imagegate writes is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _is_referenced(conn: Connection, key: str) -> bool:
    used = sa.select(images.c.id).where(
        sa.or_(images.c.storage_key == key, images.c.thumbnail_key == key)
    )
    return conn.execute(used.limit(1)).first() is not None


def _expired(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(cache_entries.c.expires_at.is_not(None), cache_entries.c.expires_at <= now)


def _delete_expired_cache(conn: Connection, now: datetime) -> list[tuple[str, str]]:
    gone = [
        (row.scope, row.cache_key)
        for row in conn.execute(
            sa.select(cache_entries.c.scope, cache_entries.c.cache_key).where(_expired(now))
        )
    ]
    if gone:
        conn.execute(cache_entries.delete().where(_expired(now)))
    return gone


class SqlMaintenanceRepository:
    def __init__(self, engine: AsyncEngine, writes: TransactionRunner) -> None:
        self._engine = engine
        self._writes = writes

    async def blob_uses(self) -> list[BlobUse]:
        """Every image record with the blobs (image, thumbnail) it refers to."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(_USES)
            return list(_uses(rows))

    async def is_referenced(self, key: str) -> bool:
        """Whether any record uses ``key`` now (checked again just before a blob is deleted)."""
        async with self._engine.connect() as conn:
            return await conn.run_sync(lambda sync: _is_referenced(sync, key))

    async def expired_cache_entries(self, now: datetime) -> list[tuple[str, str]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(cache_entries.c.scope, cache_entries.c.cache_key).where(_expired(now))
            )
            return [(row.scope, row.cache_key) for row in rows]

    async def delete_expired_cache_entries(self, now: datetime) -> list[tuple[str, str]]:
        return await self._writes(lambda conn: _delete_expired_cache(conn, now))


def _uses(rows: Iterable[Any]) -> Iterator[BlobUse]:
    for row in rows:
        yield BlobUse(
            image_id=row.id,
            storage_key=row.storage_key,
            thumbnail_key=row.thumbnail_key,
            created_at=_aware(row.created_at),
            pinned=bool(row.pinned),
        )
