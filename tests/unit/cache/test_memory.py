"""The memory tier's own bounds (what every tier does is in tests/contract/test_cache_tier.py)."""

from __future__ import annotations

from imagegate.cache.memory import MemoryCache
from imagegate.models import CachedResult


def _entry(generation_id: str) -> CachedResult:
    return CachedResult(generation_id, (), 0)


async def test_it_holds_at_most_max_entries() -> None:
    tier = MemoryCache(max_entries=2, seconds=60)
    for name in ("a", "b", "c"):
        await tier.put("*", name, _entry(name))
    kept = [name for name in ("a", "b", "c") if await tier.get("*", name) is not None]
    assert len(kept) == 2
    assert "c" in kept


async def test_zero_entries_or_seconds_turn_it_off() -> None:
    for tier in (MemoryCache(max_entries=0, seconds=60), MemoryCache(max_entries=10, seconds=0)):
        await tier.put("*", "k", _entry("k"))
        assert await tier.get("*", "k") is None
