"""The durable cache index: request key -> the generation whose images answer it.

Entries are written with their generation (``SqlGenerationRepository.record``), so an entry
never points at a generation that is not committed. Reads go through the async engine.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from imagegate.db.engine import TransactionRunner
from imagegate.db.tables import cache_entries, generations, images
from imagegate.models import CachedResult, StoredImage

_IMAGE_FIELDS = (
    "content_hash",
    "storage_key",
    "mime",
    "width",
    "height",
    "byte_size",
    "revised_prompt",
    "thumbnail_key",
    "placeholder",
)


# Built once: on the request path, building and compiling the statement each time cost more
# than running it.
_LOOKUP = (
    sa.select(
        cache_entries.c.generation_id.label("source_id"),
        cache_entries.c.expires_at,
        generations.c.cost_micro_usd,
        *(images.c[name] for name in _IMAGE_FIELDS),
    )
    .join(generations, generations.c.id == cache_entries.c.generation_id)
    .join(images, images.c.generation_id == cache_entries.c.generation_id)
    .where(
        cache_entries.c.scope == sa.bindparam("scope"),
        cache_entries.c.cache_key == sa.bindparam("cache_key"),
        sa.or_(
            cache_entries.c.expires_at.is_(None),
            cache_entries.c.expires_at > sa.bindparam("now", type_=sa.DateTime(timezone=True)),
        ),
    )
    .order_by(images.c.position)
)


class SqlCacheRepository:
    def __init__(self, reads: TransactionRunner) -> None:
        self._reads = reads

    async def lookup(self, scope: str, cache_key: str, now: datetime) -> CachedResult | None:
        params = {"scope": scope, "cache_key": cache_key, "now": now}
        rows = await self._reads(lambda conn: list(conn.execute(_LOOKUP, params)))
        if not rows:
            return None
        stored = tuple(
            StoredImage(**{name: row._mapping[name] for name in _IMAGE_FIELDS}) for row in rows
        )
        first = rows[0]
        return CachedResult(first.source_id, stored, first.cost_micro_usd, _aware(first.expires_at))


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything imagegate writes is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
