"""The exact cache: memory tier, then the SQL index; entries written with their generation."""

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
        enabled: bool,
        ttl_seconds: float | None,
        per_user: bool,
    ) -> None:
        self._index = index
        self._memory = memory
        self.enabled = enabled
        self._ttl = timedelta(seconds=ttl_seconds) if ttl_seconds else None
        self._per_user = per_user

    def scope_for(self, principal: Principal) -> str:
        return principal.user_id if self._per_user else "*"

    async def lookup(self, scope: str, cache_key: str) -> CachedResult | None:
        if not self.enabled:
            return None
        now = datetime.now(UTC)
        found = self._memory.get(scope, cache_key)
        if found is not None and (found.expires_at is None or _aware(found.expires_at) > now):
            return found
        found = await self._index.lookup(scope, cache_key, now)
        if found is not None:
            self._memory.put(scope, cache_key, found)
        return found

    def remembered(self, scope: str, cache_key: str) -> CachedResult | None:
        """The memory tier only: what this process made or saw recently."""
        found = self._memory.get(scope, cache_key)
        if found is None or (found.expires_at and _aware(found.expires_at) <= datetime.now(UTC)):
            return None
        return found

    def entry(self, scope: str, cache_key: str) -> CacheEntry | None:
        """The entry to write with a fresh generation, or None when caching is off."""
        if not self.enabled:
            return None
        expires_at = datetime.now(UTC) + self._ttl if self._ttl else None
        return CacheEntry(scope, cache_key, expires_at)

    def remember(self, entry: CacheEntry, result: CachedResult) -> None:
        """After the entry is committed: serve the next identical request from memory."""
        self._memory.put(entry.scope, entry.cache_key, replace(result, expires_at=entry.expires_at))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
