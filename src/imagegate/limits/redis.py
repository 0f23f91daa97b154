"""Traffic limits in Redis, shared by every replica (``IMAGEGATE_REDIS_URL``).

Moving windows are the ``limits`` library's (one Lua script per hit, atomic in Redis).
Concurrency slots are a sorted set per key of in-flight holders scored by their expiry: one
Lua script drops expired holders, counts, and adds the new one atomically, so a replica that
dies mid-generation leaks a slot for ``ttl_seconds`` at most (an INCR/DECR counter would leak it
for as long as traffic keeps refreshing its TTL). Windows use the replicas' clocks: keep them
in sync (NTP). Needs the ``redis`` extra: ``pip install 'imagegate[redis]'``.

``connection_pool`` builds the one pool this limiter and the Redis cache tier
(``cache/redis.py``) share; the container owns it and disconnects it last.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from limits import RateLimitItem, RateLimitItemPerSecond

from imagegate.errors import ConfigurationError, Unavailable
from imagegate.limits.base import WindowState

try:
    import redis.asyncio as aioredis
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigurationError(
        "IMAGEGATE_REDIS_URL needs the redis client: pip install 'imagegate[redis]'",
        param="IMAGEGATE_REDIS_URL",
    ) from exc

_ACQUIRE_SLOT = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('zadd', KEYS[1], ARGV[3], ARGV[4])
redis.call('expire', KEYS[1], ARGV[5])
return 1
"""


@contextmanager
def _reaching_redis() -> Iterator[None]:
    """Redis down or too slow is a 503 the client may retry, not a 500 with a traceback.
    (Whether limits should then fail open or closed is a policy decision; today: closed.)"""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise Unavailable(
            "The traffic limits cannot be checked right now (their Redis does not answer); "
            "try again shortly.",
            retry_after=5,
        ) from exc


def connection_pool(url: str, timeout_seconds: float) -> aioredis.ConnectionPool:
    """Connections to ``url`` that give up after ``timeout_seconds`` (connect and each reply):
    an unreachable Redis must cost a request a bounded wait, never a hang."""
    try:
        return aioredis.ConnectionPool.from_url(
            url, socket_connect_timeout=timeout_seconds, socket_timeout=timeout_seconds
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"IMAGEGATE_REDIS_URL is not a Redis URL ({exc}); use redis://host:6379/0",
            param="IMAGEGATE_REDIS_URL",
        ) from None


class RedisRateLimiter:
    def __init__(self, pool: aioredis.ConnectionPool, prefix: str = "imagegate") -> None:
        self._redis = aioredis.Redis(connection_pool=pool)
        storage = RedisStorage(
            "async+redis://",  # only picks the driver: the connections come from ``pool``
            implementation="redispy",
            key_prefix=f"{prefix}:window",
            connection_pool=pool,  # type: ignore[arg-type]  # limits under-annotates
        )
        self._windows = MovingWindowRateLimiter(storage)
        self._acquire = self._redis.register_script(_ACQUIRE_SLOT)
        self._prefix = f"{prefix}:slots"
        self._items: dict[tuple[int, int], RateLimitItem] = {}

    async def hit(
        self, key: str, limit: int, cost: int = 1, window_seconds: int = 60
    ) -> WindowState:
        item = self._items.get((limit, window_seconds))
        if item is None:
            item = self._items[limit, window_seconds] = RateLimitItemPerSecond(
                limit, window_seconds
            )
        with _reaching_redis():
            admitted = await self._windows.hit(item, key, cost=cost)
            reset_at, remaining = await self._windows.get_window_stats(item, key)
        return WindowState(admitted, limit, max(0, remaining), max(0.0, reset_at - time.time()))

    async def acquire_slot(self, key: str, limit: int, holder: str, ttl_seconds: float) -> bool:
        now = time.time()
        expire = max(1, int(ttl_seconds) + 1)
        args: list[float | int | str] = [now, limit, now + ttl_seconds, holder, expire]
        with _reaching_redis():
            return bool(await self._acquire(keys=[f"{self._prefix}:{key}"], args=args))

    async def release_slot(self, key: str, holder: str) -> None:
        with _reaching_redis():
            await self._redis.zrem(f"{self._prefix}:{key}", holder)

    async def aclose(self) -> None:
        await self._redis.aclose()  # the pool is the container's: it disconnects it
