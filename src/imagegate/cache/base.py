"""The protocol of a cache tier: results by (scope, key), bounded and time-limited."""

from __future__ import annotations

from typing import Protocol

from imagegate.models import CachedResult


class CacheTier(Protocol):
    def get(self, scope: str, cache_key: str) -> CachedResult | None: ...

    def put(self, scope: str, cache_key: str, result: CachedResult) -> None: ...

    def discard(self, scope: str, cache_key: str) -> None: ...
