"""In-process LRU tier: a bounded, time-limited map in front of Redis and the SQL index.

Entries live at most ``seconds`` here, so a refresh made by another process is seen within that
time; the SQL index stays the source of truth. Its methods are ``async`` only to share the
``CacheTier`` protocol with the Redis tier: they never await anything.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cachetools import TTLCache

from imagegate.models import CachedResult


class MemoryCache:
    def __init__(self, max_entries: int, seconds: float) -> None:
        self._entries: TTLCache[tuple[str, str], CachedResult] | None = (
            TTLCache(maxsize=max_entries, ttl=seconds) if max_entries and seconds else None
        )

    async def get(self, scope: str, cache_key: str) -> CachedResult | None:
        return self._fresh((scope, cache_key))

    async def put(self, scope: str, cache_key: str, result: CachedResult) -> None:
        if self._entries is not None and not _expired(result):
            self._entries[(scope, cache_key)] = result

    async def add(self, scope: str, cache_key: str, result: CachedResult) -> None:
        if self._fresh((scope, cache_key)) is None:
            await self.put(scope, cache_key, result)

    def _fresh(self, key: tuple[str, str]) -> CachedResult | None:
        if self._entries is None:
            return None
        found = self._entries.get(key)
        if found is not None and _expired(found):
            del self._entries[key]
            return None
        return found


def _expired(result: CachedResult) -> bool:
    return result.expires_at is not None and result.expires_at <= datetime.now(UTC)
