"""The protocol of a cache tier: results by (scope, key), bounded and time-limited."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from imagegate.models import CachedResult


class CacheTier(Protocol):
    def get(self, scope: str, cache_key: str) -> CachedResult | None: ...

    def put(self, scope: str, cache_key: str, result: CachedResult) -> None: ...

    def discard(self, scope: str, cache_key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    cache_key: str
    prompt: str
    similarity: float


class SemanticIndex(Protocol):
    """Prompts of cached requests by meaning, within a group of otherwise identical requests."""

    async def find(self, group: str, prompt: str) -> SemanticMatch | None: ...

    async def add(self, group: str, prompt: str, cache_key: str) -> None: ...
