"""Traffic limits in this process's memory: the embedded default, one process only.

Uses the synchronous storage of ``limits``: its calls do no I/O, so running them on the event
loop is atomic (no ``await`` between check and count) and costs a few microseconds, where the
asyncio storage schedules a clean-up task (with a thread hop per key) on most calls.
"""

from __future__ import annotations

import time

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from imagegate.limits.base import WindowState


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._windows = MovingWindowRateLimiter(MemoryStorage())
        self._items: dict[tuple[int, int], RateLimitItem] = {}
        self._slots: dict[str, set[str]] = {}

    async def hit(
        self, key: str, limit: int, cost: int = 1, window_seconds: int = 60
    ) -> WindowState:
        item = self._items.get((limit, window_seconds))
        if item is None:
            item = self._items[limit, window_seconds] = RateLimitItemPerSecond(
                limit, window_seconds
            )
        admitted = self._windows.hit(item, key, cost=cost)
        reset_at, remaining = self._windows.get_window_stats(item, key)
        return WindowState(admitted, limit, max(0, remaining), max(0.0, reset_at - time.time()))

    async def acquire_slot(self, key: str, limit: int, holder: str, ttl_seconds: float) -> bool:
        # In one process a slot is always released in a ``finally``: no expiry needed. Holders
        # are kept by name, as in Redis, so releasing one that holds nothing frees nothing.
        holders = self._slots.setdefault(key, set())
        if len(holders) >= limit:
            return False
        holders.add(holder)
        return True

    async def release_slot(self, key: str, holder: str) -> None:
        holders = self._slots.get(key)
        if holders is not None:
            holders.discard(holder)
            if not holders:
                del self._slots[key]

    async def aclose(self) -> None:
        return None
