"""The protocol of a rate limiter: moving-window counters and concurrency slots, by key.

Two implementations: ``memory.py`` (one process) and ``redis.py`` (every replica shares the
counts). Both use the ``limits`` library's moving window; only the storage differs. Keys are
opaque strings chosen by the caller (``services/traffic.py``); a backend may prefix them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class WindowState:
    """Where one moving window stands right after a hit."""

    admitted: bool
    limit: int
    remaining: int
    reset_seconds: float
    """Seconds until the oldest hit in the window leaves it, i.e. until ``remaining`` grows."""

    @property
    def retry_after(self) -> float:
        """What a refused caller should wait: at least one second (``Retry-After`` is whole)."""
        return max(1.0, math.ceil(self.reset_seconds))


class RateLimiter(Protocol):
    async def hit(
        self, key: str, limit: int, cost: int = 1, window_seconds: int = 60
    ) -> WindowState:
        """Count ``cost`` against at most ``limit`` per moving ``window_seconds``, atomically:
        either all of ``cost`` is counted (admitted) or nothing is."""
        ...

    async def acquire_slot(self, key: str, limit: int, holder: str, ttl_seconds: float) -> bool:
        """Take one of ``limit`` concurrent slots for ``holder``; False when all are taken. A slot
        never released (a crashed process) frees itself after ``ttl_seconds``."""
        ...

    async def release_slot(self, key: str, holder: str) -> None: ...

    async def aclose(self) -> None: ...
