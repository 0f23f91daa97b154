"""Identical requests in flight at the same time make one upstream call.

In one process, followers await the leader's future. Across processes sharing a database, the
leader holds a claim row (``FlightRepository``) renewed while it works; followers elsewhere poll
for the cache entry the leader writes with its generation, for the claim's failure, or for the
claim to lapse (its owner died), in which case one of them takes over. A failure reaches every
follower that was waiting and is not cached.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from imagegate.db.base import FlightRepository
from imagegate.errors import ImagegateError, RequestAbandoned, error_for_code
from imagegate.models import CachedResult, ClaimOutcome, FlightClaim, new_id
from imagegate.services.caching import ResultCache

T = TypeVar("T")


class _LeaderGone(Exception):
    """What local followers hear when the leader's caller left (disconnected or canceled)."""


class SingleFlight:
    def __init__(
        self,
        flights: FlightRepository,
        cache: ResultCache,
        *,
        cross_process: bool,
        lease_seconds: float,
        poll_seconds: float = 0.05,
    ) -> None:
        self._flights = flights
        self._cache = cache
        self._cross_process = cross_process
        self._lease = timedelta(seconds=lease_seconds)
        self._poll = poll_seconds
        self._owner = new_id()
        self._local: dict[tuple[str, str], asyncio.Future[CachedResult]] = {}

    async def run(
        self,
        scope: str,
        cache_key: str,
        lead: Callable[[FlightClaim | None], Awaitable[T]],
        share: Callable[[T], CachedResult],
        *,
        reuse_cached: bool = True,
    ) -> T | CachedResult:
        """``lead``'s result if this request led, else the leader's shared result.

        ``reuse_cached=False`` (a refresh) never answers from an entry made before this call.
        """
        while True:
            local = self._local.get((scope, cache_key))
            if local is None:
                return await self._run_leading(scope, cache_key, lead, share, reuse_cached)
            try:
                return await asyncio.shield(local)
            except _LeaderGone:
                continue  # its caller left before it got an answer: one of us leads now

    async def _run_leading(
        self,
        scope: str,
        cache_key: str,
        lead: Callable[[FlightClaim | None], Awaitable[T]],
        share: Callable[[T], CachedResult],
        reuse_cached: bool,
    ) -> T | CachedResult:
        shared: asyncio.Future[CachedResult] = asyncio.get_running_loop().create_future()
        self._local[(scope, cache_key)] = shared
        try:
            claim = await self._claim_or_follow(scope, cache_key, reuse_cached)
            if isinstance(claim, CachedResult):
                shared.set_result(claim)
                return claim
            result = await self._lead(claim, lead)
            shared.set_result(share(result))
            return result
        except BaseException as exc:
            if not shared.done():
                gone = isinstance(exc, RequestAbandoned | asyncio.CancelledError)
                shared.set_exception(_LeaderGone() if gone else exc)
            raise
        finally:
            del self._local[(scope, cache_key)]
            if shared.done() and not shared.cancelled():
                shared.exception()  # mark retrieved: followers may be none

    async def _claim_or_follow(
        self, scope: str, cache_key: str, reuse_cached: bool
    ) -> FlightClaim | CachedResult | None:
        """A claim to lead with, the result another process made, or None (no cross-process)."""
        if not self._cross_process:
            return None
        since = datetime.now(UTC)
        while True:
            outcome = await self._claim(scope, cache_key, since, reuse_cached)
            if outcome is ClaimOutcome.CLAIMED:
                return FlightClaim(scope, cache_key, self._owner)
            if outcome is ClaimOutcome.CACHED:
                result = await self._cache.lookup(scope, cache_key)
                if result is not None:
                    return result
                continue  # expired or gone between the two reads: try again
            await self._follow(scope, cache_key, since)

    async def _follow(self, scope: str, cache_key: str, since: datetime) -> None:
        """Wait while someone else generates; return when it is time to claim again."""
        while True:
            await asyncio.sleep(self._poll)
            state = await self._flights.state(scope, cache_key)
            if state is None:
                # The leader's claim ends in the transaction that writes its cache entry: the
                # next claim attempt finds the entry, or that nobody is generating any more.
                return
            if state.failed_at is not None and state.failed_at >= since:
                raise error_for_code(state.error_code, state.error_message or "upstream failed")
            if state.expires_at <= datetime.now(UTC) or state.failed_at is not None:
                return  # its owner died, or it failed before this request came

    async def _claim(
        self, scope: str, cache_key: str, since: datetime, reuse_cached: bool
    ) -> ClaimOutcome:
        return await self._flights.claim(
            scope, cache_key, self._owner, self._expiry(), since if reuse_cached else None
        )

    async def _lead(
        self, claim: FlightClaim | None, lead: Callable[[FlightClaim | None], Awaitable[T]]
    ) -> T:
        if claim is None:
            return await lead(None)
        heartbeat = asyncio.create_task(self._renew(claim))
        try:
            return await lead(claim)
        except ImagegateError as exc:
            if isinstance(exc, RequestAbandoned):
                # Not a failure of the request: a follower elsewhere takes over the claim.
                await self._release(claim)
            else:
                await self._flights.fail(
                    claim.scope, claim.cache_key, claim.owner, exc.code, exc.message
                )
            raise
        except BaseException:
            await self._release(claim)
            raise
        finally:
            heartbeat.cancel()

    async def _release(self, claim: FlightClaim) -> None:
        with contextlib.suppress(Exception):
            await asyncio.shield(self._flights.release(claim.scope, claim.cache_key, claim.owner))

    async def _renew(self, claim: FlightClaim) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            await self._flights.extend(claim.scope, claim.cache_key, claim.owner, self._expiry())

    def _expiry(self) -> datetime:
        return datetime.now(UTC) + self._lease


def _where(claim: FlightClaim) -> tuple[str, str, str]:
    return claim.scope, claim.cache_key, claim.owner
