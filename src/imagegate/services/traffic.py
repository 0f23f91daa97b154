"""Per-key traffic control: requests per minute and images per minute.

Where each limit is checked, and why:

- **Requests per minute** is a property of HTTP requests, so it is counted by a dependency on
  the two image routes (``api/rate_limits.py`` calls ``count_request``) right after
  authentication and before the body is read: a refused request costs almost nothing, and
  every request is counted, cache hits and invalid bodies included. The window's state is
  kept on ``request.state`` and a small ASGI middleware writes the ``x-ratelimit-*-requests``
  headers on whatever response leaves, success or error.
- **Images per minute** needs the validated request (``n``), so ``GenerationService.generate``
  calls ``count_images`` once the request is normalized: every front end is limited the same
  way. It counts the images a request asks for, whether or not the cache answers it.
- **Concurrent generations** are a place in the model's line (``services/lanes.py``): only a
  request that calls a provider takes one, and one that finds none waits its turn.

Only requests made with an API key are limited (the local CLI has none). Limits are moving
one-minute windows (the ``limits`` library) in memory or, with ``IMAGEGATE_REDIS_URL``, in
Redis so every replica shares them. A key's own limits (``api_keys`` columns) override the
configured defaults; 0 means unlimited. This images window is separate from the budgets
feature's images-per-minute quota (a calendar minute, ``services/budgets.py``).
"""

from __future__ import annotations

from imagegate.errors import InvalidRequest, RateLimited
from imagegate.limits.base import RateLimiter, WindowState
from imagegate.models import Principal
from imagegate.services.lanes import effective_limit

__all__ = ["RateLimiter", "TrafficService", "WindowState"]


class TrafficService:
    def __init__(
        self,
        limiter: RateLimiter,
        *,
        requests_per_minute: int | None,
        images_per_minute: int | None,
    ) -> None:
        self._limiter = limiter
        self._requests_per_minute = requests_per_minute
        self._images_per_minute = images_per_minute or 0

    async def count_request(self, principal: Principal) -> WindowState | None:
        """Count one request of the principal's key; None when no request limit applies.

        Never raises: the caller reports the state (headers) and then calls ``refuse_if_over``.
        """
        if principal.key_id is None:
            return None
        limit = effective_limit(
            principal.rate_limits.requests_per_minute, self._requests_per_minute
        )
        if not limit:
            return None
        return await self._limiter.hit(f"requests:{principal.key_id}", limit)

    @staticmethod
    def refuse_if_over(state: WindowState) -> None:
        if not state.admitted:
            raise RateLimited(
                f"Rate limit reached for requests: {state.limit} per minute for this API key. "
                f"Try again in {state.retry_after:.0f}s.",
                retry_after=state.retry_after,
            )

    async def count_images(self, principal: Principal, images: int) -> None:
        """Count ``images`` against the key's images per minute; a 429 when it is used up."""
        if principal.key_id is not None and self._images_per_minute:
            await self._count_images(principal.key_id, images)

    async def _count_images(self, key_id: str, images: int) -> None:
        limit = self._images_per_minute
        if images > limit:
            raise InvalidRequest(
                f"n={images} is more than the {limit} images per minute this API key may ask "
                "for; ask for fewer.",
                param="n",
            )
        state = await self._limiter.hit(f"images:{key_id}", limit, cost=images)
        if not state.admitted:
            raise RateLimited(
                f"Rate limit reached for images: {limit} per minute for this API key "
                f"({state.remaining} left now, {images} asked for). "
                f"Try again in {state.retry_after:.0f}s.",
                param="n",
                retry_after=state.retry_after,
            )
