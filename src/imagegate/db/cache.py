"""The durable cache index: request key -> the generation whose images answer it.

Entries are written with their generation (``SqlGenerationRepository.record``), so an entry
never points at a generation that is not committed. Reads go through the async engine.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.tables import cache_entries, generations, images
from imagegate.models import CachedResult, StoredImage


class SqlCacheRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def lookup(self, scope: str, cache_key: str, now: datetime) -> CachedResult | None:
        entry = (
            sa.select(
                cache_entries.c.generation_id,
                cache_entries.c.expires_at,
                generations.c.cost_micro_usd,
            )
            .join(generations, generations.c.id == cache_entries.c.generation_id)
            .where(
                cache_entries.c.scope == scope,
                cache_entries.c.cache_key == cache_key,
                sa.or_(cache_entries.c.expires_at.is_(None), cache_entries.c.expires_at > now),
            )
        )
        async with self._engine.connect() as conn:
            found = (await conn.execute(entry)).first()
            if found is None:
                return None
            rows = await conn.execute(
                sa.select(images)
                .where(images.c.generation_id == found.generation_id)
                .order_by(images.c.position)
            )
            stored = tuple(
                StoredImage(
                    content_hash=row.content_hash,
                    storage_key=row.storage_key,
                    mime=row.mime,
                    width=row.width,
                    height=row.height,
                    byte_size=row.byte_size,
                    revised_prompt=row.revised_prompt,
                )
                for row in rows
            )
        if not stored:
            return None
        return CachedResult(found.generation_id, stored, found.cost_micro_usd, found.expires_at)
