"""The one HTTP layer every adapter sends through.

Adapters build an ``httpx.Request`` with a pure function, send it with ``send`` over the shared
client the container owns (one connection pool, keep-alive), and turn the reply into images with
another pure function. Failures are classified here, once:

- transport errors (connect, reset, protocol) -> ``ProviderError`` (retryable)
- timeouts -> ``ProviderTimeout`` (retryable)
- 429 -> ``ProviderRateLimited`` with the provider's ``Retry-After``
- 408, 409, 425, 5xx -> ``ProviderError`` (504 -> ``ProviderTimeout``)
- 401, 403 -> ``ProviderRejected`` (our credentials: never retried, the next target is tried)
- 404 -> ``ProviderRejected`` (unknown or retired upstream model)
- 400, 413, 422 and other 4xx -> ``ProviderBadRequest`` (the caller's request: final)

Content-policy refusals look different at every provider, so adapters detect those themselves
(raising ``ContentPolicyViolation``) before calling ``raise_for_status``.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from imagegate.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
)

MAX_RETRY_AFTER_SECONDS = 120.0
"""A provider's ``Retry-After`` is honoured up to this; longer hints are capped, not obeyed."""

_RETRYABLE_STATUSES = frozenset({408, 409, 425})


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    headers: httpx.Headers
    content: bytes
    provider: str

    def json(self) -> Any:
        """The body as JSON; a body that is not JSON is a retryable provider error."""
        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError:
            raise ProviderError(
                f"{self.provider} returned a malformed body (HTTP {self.status}, "
                f"{len(self.content)} bytes, not JSON)"
            ) from None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def new_client(max_connections: int = 256) -> httpx.AsyncClient:
    """The shared client: one pool for every provider; timeouts are set per request."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=64),
        timeout=httpx.Timeout(60.0),
        follow_redirects=False,
        trust_env=False,
    )


async def send(
    client: httpx.AsyncClient, request: httpx.Request, *, provider: str, seconds: float
) -> HttpReply:
    """Send ``request``, allowing ``seconds`` for each phase (connect, write, each read).

    The router also bounds the whole attempt with its deadline; this bound makes a stalled
    socket fail fast even when the deadline is far away.
    """
    timeout = seconds
    request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
    try:
        response = await client.send(request)
    except httpx.TimeoutException:
        raise ProviderTimeout(f"{provider} did not answer within {timeout:g} s") from None
    except httpx.TransportError as exc:
        raise ProviderError(f"{provider}: connection failed ({type(exc).__name__})") from None
    return HttpReply(response.status_code, response.headers, response.content, provider)


def retry_after_seconds(headers: httpx.Headers, now: float | None = None) -> float | None:
    """The provider's wait hint: ``retry-after-ms``, then ``retry-after`` (seconds or HTTP date)."""
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return _capped(float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return _capped(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return _capped((when - current).total_seconds())


def _capped(seconds: float) -> float:
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def raise_for_status(reply: HttpReply, message: str | None = None) -> None:
    """Raise the error-tree class for a non-2xx reply; ``message`` is the provider's own words.

    Messages never include request headers; for 401/403 the provider's words are dropped too,
    since some providers echo part of the credential back.
    """
    if reply.ok:
        return
    status, provider = reply.status, reply.provider
    detail = f": {message}" if message else ""
    if status in (401, 403):
        raise ProviderRejected(
            f"{provider} refused imagegate's credentials (HTTP {status}); check its API key",
            code="upstream_auth_failed",
        )
    if status == 404:
        raise ProviderRejected(
            f"{provider} does not know this model (HTTP 404){detail}",
            code="upstream_model_not_found",
        )
    if status == 429:
        raise ProviderRateLimited(
            f"{provider} is rate limiting imagegate (HTTP 429){detail}",
            retry_after=retry_after_seconds(reply.headers),
        )
    if status == 504:
        raise ProviderTimeout(f"{provider} timed out (HTTP 504){detail}")
    if status >= 500 or status in _RETRYABLE_STATUSES:
        raise ProviderError(
            f"{provider} failed (HTTP {status}){detail}",
            retry_after=retry_after_seconds(reply.headers),
        )
    raise ProviderBadRequest(f"{provider} rejected the request (HTTP {status}){detail}")
