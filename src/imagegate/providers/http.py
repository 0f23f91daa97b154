"""The one HTTP layer every adapter sends through.

Adapters build an ``httpx.Request`` with a pure function, send it over the shared
``UpstreamClient`` the container owns (one connection pool, keep-alive), and turn the reply into
images with another pure function; ``HttpProvider`` joins the two.

Why two libraries: httpx builds requests (URLs, query strings, multipart bodies) with an API the
pure adapter functions and their tests read well; aiohttp moves the bytes. Measured on this
project's 2-core machine against an instant loopback upstream, ``UpstreamClient`` alone
topped out near 1,000 requests/s while spending a whole core, which is the gateway's entire
budget; aiohttp's client did over 10,000 (see docs/benchmarks.md).

Failures are classified here, once:

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
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import orjson

from imagegate.catalog import Target
from imagegate.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
)
from imagegate.models import NormalizedRequest, ProviderResult
from imagegate.settings import ProviderSettings

MAX_RETRY_AFTER_SECONDS = 120.0
"""A provider's ``Retry-After`` is honoured up to this; longer hints are capped, not obeyed."""

_RETRYABLE_STATUSES = frozenset({408, 409, 425})


@functools.lru_cache(maxsize=256)
def upstream_url(text: str) -> httpx.URL:
    """``text`` parsed once: adapters call the same few URLs (from the settings) again and
    again, and parsing a URL string is most of what building an ``httpx.Request`` costs
    (measured: about two thirds of it for a generation's JSON request)."""
    return httpx.URL(text)


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    headers: Mapping[str, str]
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

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object, or ``{}`` when it is not one (error pages, proxies)."""
        try:
            parsed = orjson.loads(self.content)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class UpstreamClient:
    """The shared connection pool for every provider call (aiohttp underneath).

    The session is created on first use, inside the running event loop, and closed by
    ``aclose`` (the container does that on shutdown).
    """

    def __init__(self, max_connections: int = 256) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _pool(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=30, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, auto_decompress=True
            )
        return self._session

    async def send(self, request: httpx.Request, *, provider: str, seconds: float) -> HttpReply:
        """Send ``request`` with ``seconds`` for the whole exchange, connect to last byte."""
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "host"]
        try:
            async with self._pool().request(
                request.method,
                str(request.url),
                headers=headers,
                data=request.read() or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as response:
                content = await response.read()
                return HttpReply(response.status, response.headers, content, provider)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise ProviderTimeout(f"{provider} did not answer within {seconds:g} s") from None
        except aiohttp.ClientError as exc:
            raise ProviderError(f"{provider}: connection failed ({type(exc).__name__})") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


def new_client(max_connections: int = 256) -> UpstreamClient:
    return UpstreamClient(max_connections)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
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


BuildRequest = Callable[[NormalizedRequest, Target, ProviderSettings], httpx.Request]
ParseResponse = Callable[[HttpReply, NormalizedRequest, Target], ProviderResult]


class HttpProvider:
    """An ``ImageProvider`` made of an adapter's two pure functions around one ``send``.

    Adapters subclass it to check their settings, then hand over their ``build_request`` and
    ``parse_response``; everything between (timeout, pool, failure classification) is here.
    """

    def __init__(
        self,
        name: str,
        settings: ProviderSettings,
        client: UpstreamClient,
        build: BuildRequest,
        parse: ParseResponse,
    ) -> None:
        self.name = name
        self._settings = settings
        self._client = client
        self._build = build
        self._parse = parse

    async def generate(self, request: NormalizedRequest, target: Target) -> ProviderResult:
        reply = await self._client.send(
            self._build(request, target, self._settings),
            provider=self.name,
            seconds=self._settings.timeout_seconds,
        )
        return self._parse(reply, request, target)

    async def aclose(self) -> None:
        """Nothing to close: the container owns the shared client."""
