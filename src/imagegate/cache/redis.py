"""Redis tier of the exact cache, shared by every replica (``IMAGEGATE_REDIS_URL``).

It sits between each process's memory tier and the SQL index, so a replica finds what another
made (or refreshed) without a database read. An entry is a small JSON value (the source
generation, its cost and its images' records, never image bytes) kept until the entry's own
expiry and at most ``max_seconds``, so Redis memory stays bounded whatever the cache TTL; an
older entry is read from SQL and put back here on the way.

**Fails open.** The cache is an optimisation: when Redis cannot be reached, times out or
answers nonsense, a lookup is a miss here and falls through to SQL, a write is skipped, and
no request fails for it. After a failure the tier is not asked again for ``retry_seconds``
(so an unreachable Redis costs no request a timeout meanwhile), and a warning is logged at
most once per ``warn_seconds``. Needs the ``redis`` extra: ``pip install 'imagegate[redis]'``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import orjson

from imagegate.errors import ConfigurationError
from imagegate.models import CachedResult, StoredImage

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigurationError(
        "IMAGEGATE_REDIS_URL needs the redis client: pip install 'imagegate[redis]'",
        param="IMAGEGATE_REDIS_URL",
    ) from exc

log = logging.getLogger(__name__)
T = TypeVar("T")

FORMAT = "v1"
"""Part of every key, for a change of layout that still decodes. A value of another shape (say
``StoredImage`` gained a field) does not decode: it is dropped, and SQL answers."""

_IMAGE_FIELDS = tuple(field.name for field in dataclasses.fields(StoredImage))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)  # integer microseconds: exact, unlike float seconds


def encode(result: CachedResult) -> bytes:
    """``[generation, cost, expires (epoch µs) or null, [[hash, key, mime, w, h, bytes,
    revised prompt, thumbnail key, placeholder], ...]]``: positional, so an entry is a few
    hundred bytes."""
    expires = None if result.expires_at is None else (result.expires_at - _EPOCH) // _MICROSECOND
    images = [[getattr(image, name) for name in _IMAGE_FIELDS] for image in result.images]
    return orjson.dumps([result.generation_id, result.cost_micro_usd, expires, images])


def decode(raw: bytes | str) -> CachedResult:
    """The inverse of ``encode``; ValueError (or TypeError) for anything it did not write."""
    generation_id, cost, expires, images = orjson.loads(raw)
    return CachedResult(
        generation_id=str(generation_id),
        images=tuple(
            StoredImage(**dict(zip(_IMAGE_FIELDS, fields, strict=True))) for fields in images
        ),
        cost_micro_usd=int(cost),
        expires_at=None if expires is None else _EPOCH + int(expires) * _MICROSECOND,
    )


class RedisCache:
    def __init__(
        self,
        pool: aioredis.ConnectionPool,
        *,
        prefix: str = "imagegate",
        max_seconds: float,
        retry_seconds: float = 5.0,
        warn_seconds: float = 60.0,
    ) -> None:
        self._redis = aioredis.Redis(connection_pool=pool)
        self._prefix = f"{prefix}:cache:{FORMAT}"
        self._max_ms = max(1, int(max_seconds * 1000))
        self._retry_seconds = retry_seconds
        self._warn_seconds = warn_seconds
        self._down_until = 0.0
        self._warned_at = -math.inf
        self._failing = False

    def key(self, scope: str, cache_key: str) -> str:
        return f"{self._prefix}:{scope}:{cache_key}"

    async def get(self, scope: str, cache_key: str) -> CachedResult | None:
        key = self.key(scope, cache_key)
        raw = await self._call(lambda: self._redis.get(key))
        if raw is None:
            return None
        try:
            found = decode(raw)
        except (ValueError, TypeError):
            log.warning("dropping an unreadable cache entry in Redis (%s)", key)
            await self._call(lambda: self._redis.delete(key))
            return None
        if found.expires_at is not None and found.expires_at <= datetime.now(UTC):
            return None  # its TTL came from the writing replica's clock: trust our own too
        return found

    async def put(self, scope: str, cache_key: str, result: CachedResult) -> None:
        await self._set(scope, cache_key, result, only_if_absent=False)

    async def add(self, scope: str, cache_key: str, result: CachedResult) -> None:
        await self._set(scope, cache_key, result, only_if_absent=True)

    async def aclose(self) -> None:
        await self._redis.aclose()  # the pool is the container's: it disconnects it

    async def _set(
        self, scope: str, cache_key: str, result: CachedResult, *, only_if_absent: bool
    ) -> None:
        ttl_ms = self._max_ms
        if result.expires_at is not None:
            ttl_ms = min(
                ttl_ms, int((result.expires_at - datetime.now(UTC)).total_seconds() * 1000)
            )
        if ttl_ms <= 0:
            return
        key = self.key(scope, cache_key)
        value = encode(result)
        await self._call(lambda: self._redis.set(key, value, px=ttl_ms, nx=only_if_absent))

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T | None:
        """``command``'s answer, or None (logged) when Redis fails: the cache fails open."""
        if time.monotonic() < self._down_until:
            return None
        try:
            answer = await command()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        if self._failing:
            self._failing = False
            log.warning("Redis cache tier is reachable again")
        return answer

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + self._retry_seconds
        self._failing = True
        if now - self._warned_at >= self._warn_seconds:
            self._warned_at = now
            log.warning(
                "Redis cache tier unavailable (%s: %s): lookups fall through to SQL, retrying "
                "every %.0fs",
                type(exc).__name__,
                exc,
                self._retry_seconds,
            )
