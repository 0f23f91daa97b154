"""In-process LRU tier: a bounded, time-limited map in front of the SQL index.

Entries live at most ``seconds`` here, so a refresh made by another process is seen within that
time; the SQL index stays the source of truth.
"""

from __future__ import annotations

from cachetools import TTLCache

from imagegate.models import CachedResult


class MemoryCache:
    def __init__(self, max_entries: int, seconds: float) -> None:
        self._entries: TTLCache[tuple[str, str], CachedResult] | None = (
            TTLCache(maxsize=max_entries, ttl=seconds) if max_entries and seconds else None
        )

    def get(self, scope: str, cache_key: str) -> CachedResult | None:
        return None if self._entries is None else self._entries.get((scope, cache_key))

    def put(self, scope: str, cache_key: str, result: CachedResult) -> None:
        if self._entries is not None:
            self._entries[(scope, cache_key)] = result

    def discard(self, scope: str, cache_key: str) -> None:
        if self._entries is not None:
            self._entries.pop((scope, cache_key), None)
