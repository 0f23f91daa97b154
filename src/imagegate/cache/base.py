"""The protocol of a cache tier: results by (scope, key), bounded and time-limited.

Two tiers implement it: ``memory.py`` (this process) and ``redis.py`` (shared by every
replica). The SQL index (``db/cache.py``) stays the source of truth; ``services/caching.py``
asks the tiers first and fills them from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from imagegate.models import CachedResult


class CacheTier(Protocol):
    async def get(self, scope: str, cache_key: str) -> CachedResult | None:
        """The entry, or None if there is none, it is past its ``expires_at`` or the tier
        cannot be reached (a tier never raises: the SQL index answers instead)."""
        ...

    async def put(self, scope: str, cache_key: str, result: CachedResult) -> None:
        """Store or replace the entry (a fresh generation, a refresh), kept at most until
        ``result.expires_at`` and at most as long as the tier keeps anything."""
        ...

    async def add(self, scope: str, cache_key: str, result: CachedResult) -> None:
        """Store the entry only if the tier holds none: a copy read from SQL must never
        replace a fresher one another process put meanwhile."""
        ...


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    cache_key: str
    prompt: str
    similarity: float


class SemanticIndex(Protocol):
    """Prompts of cached requests by meaning, within a group of otherwise identical requests."""

    async def find(self, group: str, prompt: str) -> SemanticMatch | None: ...

    async def add(self, group: str, prompt: str, cache_key: str) -> None: ...
