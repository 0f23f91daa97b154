"""Traffic limits in this process's memory: the embedded default, one process only.

Moving windows as the timestamps of the hits in each (key, limit, window), on a monotonic
clock. Every call runs on the event loop with no ``await`` between check and count, so it is
atomic, and costs a few microseconds. (The ``limits`` library, which the Redis limiter uses,
would bring every storage backend it has and a timer thread: about 1.6 MiB resident.)
"""

from __future__ import annotations

import time
from collections import deque

from imagegate.limits.base import WindowState

SWEEP_EVERY = 4096
"""Hits between sweeps that forget the windows of keys no longer used."""


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._windows: dict[tuple[str, int, int], deque[float]] = {}
        self._slots: dict[str, set[str]] = {}
        self._until_sweep = SWEEP_EVERY

    async def hit(
        self, key: str, limit: int, cost: int = 1, window_seconds: int = 60
    ) -> WindowState:
        now = time.monotonic()
        hits = self._windows.setdefault((key, limit, window_seconds), deque())
        while hits and hits[0] <= now - window_seconds:
            hits.popleft()
        admitted = len(hits) + cost <= limit
        if admitted:
            hits.extend([now] * cost)  # counted whole or not at all
        oldest = hits[0] if hits else now
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._sweep(now)
        return WindowState(
            admitted, limit, max(0, limit - len(hits)), oldest + window_seconds - now
        )

    def _sweep(self, now: float) -> None:
        self._until_sweep = SWEEP_EVERY
        for window, hits in list(self._windows.items()):
            if not hits or hits[-1] <= now - window[2]:
                del self._windows[window]

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
