"""The exact cache: memory tier, then the shared tier (Redis) when configured, then the SQL
index; entries are written to SQL with their generation, then to the tiers.

A lookup that reaches SQL puts what it found in the tiers on the way back, so a replica (or a
restarted Redis) warms up from the index; into the shared tier only if it holds nothing yet,
so that copy never replaces a fresher entry another replica made meanwhile. A fresh generation
(and a ``Cache-Control: no-cache`` refresh) replaces the entry in both tiers, so other
replicas see it once their memory tier's copy lapses (``memory_seconds``).
"""

from __future__ import annotations

import enum
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from imagegate.cache.base import CacheTier
from imagegate.db.base import CacheRepository
from imagegate.models import CachedResult, CacheEntry, Principal


class CacheMode(enum.StrEnum):
    """How one request uses the cache (``Cache-Control`` or the body's ``cache`` field)."""

    DEFAULT = "default"
    """Reuse an entry if there is one; otherwise generate and store an entry."""
    REFRESH = "refresh"
    """Always generate; replace the entry (``Cache-Control: no-cache``)."""
    BYPASS = "bypass"
    """Always generate; create no entry and join no identical request (``no-store``)."""


class ResultCache:
    def __init__(
        self,
        index: CacheRepository,
        memory: CacheTier,
        *,
        shared: CacheTier | None = None,
        enabled: bool,
        ttl_seconds: float | None,
        per_user: bool,
    ) -> None:
        self._index = index
        self._memory = memory
        self._shared = shared
        self.enabled = enabled
        self._ttl = timedelta(seconds=ttl_seconds) if ttl_seconds else None
        self._per_user = per_user

    def scope_for(self, principal: Principal) -> str:
        return principal.user_id if self._per_user else "*"

    async def lookup(self, scope: str, cache_key: str) -> CachedResult | None:
        if not self.enabled:
            return None
        found = await self._memory.get(scope, cache_key)
        if found is not None:
            return found
        if self._shared is not None:
            found = await self._shared.get(scope, cache_key)
            if found is not None:
                await self._memory.put(scope, cache_key, found)
                return found
        found = await self._index.lookup(scope, cache_key, datetime.now(UTC))
        if found is not None:
            await self._memory.put(scope, cache_key, found)
            if self._shared is not None:
                await self._shared.add(scope, cache_key, found)
        return found

    async def remembered(self, scope: str, cache_key: str) -> CachedResult | None:
        """The memory tier only: what this process made or saw recently."""
        return await self._memory.get(scope, cache_key)

    def entry(self, scope: str, cache_key: str) -> CacheEntry | None:
        """The entry to write with a fresh generation, or None when caching is off."""
        if not self.enabled:
            return None
        expires_at = datetime.now(UTC) + self._ttl if self._ttl else None
        return CacheEntry(scope, cache_key, expires_at)

    async def remember(self, entry: CacheEntry, result: CachedResult) -> None:
        """After the entry is committed: serve the next identical request from memory here and
        from the shared tier on every other replica (replacing what they had)."""
        result = replace(result, expires_at=entry.expires_at)
        await self._memory.put(entry.scope, entry.cache_key, result)
        if self._shared is not None:
            await self._shared.put(entry.scope, entry.cache_key, result)
