"""A rate limiter that lets traffic through while its backend (Redis) is unreachable.

``IMAGEGATE_LIMITS__ON_REDIS_ERROR=open``: a limit that cannot be checked admits the request
(and a slot that cannot be taken is granted) rather than refusing every request with a 503.
The outage is logged once when it starts and once when it ends, not per request.
"""

from __future__ import annotations

import logging

from imagegate.errors import Unavailable
from imagegate.limits.base import RateLimiter, WindowState

log = logging.getLogger(__name__)


class FailOpenRateLimiter:
    def __init__(self, inner: RateLimiter) -> None:
        self._inner = inner
        self.degraded: str | None = None
        """Why limits are not enforced right now; None while the backend answers."""

    async def hit(
        self, key: str, limit: int, cost: int = 1, window_seconds: int = 60
    ) -> WindowState:
        try:
            state = await self._inner.hit(key, limit, cost, window_seconds)
        except Unavailable as exc:
            self._failed(exc)
            return WindowState(True, limit, limit, float(window_seconds))
        self._answered()
        return state

    async def acquire_slot(self, key: str, limit: int, holder: str, ttl_seconds: float) -> bool:
        try:
            took = await self._inner.acquire_slot(key, limit, holder, ttl_seconds)
        except Unavailable as exc:
            self._failed(exc)
            return True
        self._answered()
        return took

    async def release_slot(self, key: str, holder: str) -> None:
        try:
            await self._inner.release_slot(key, holder)
        except Unavailable as exc:  # the slot lapses by itself after its ttl
            self._failed(exc)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def _failed(self, exc: Unavailable) -> None:
        if self.degraded is None:
            log.warning("rate limits not enforced (fail-open): %s", exc.message)
        self.degraded = "rate limits not enforced: their Redis does not answer"

    def _answered(self) -> None:
        if self.degraded is not None:
            log.warning("rate limits enforced again: their Redis answers")
        self.degraded = None
