"""The HTTP client for URLs users supply: one shared aiohttp session that only reaches what the
guard allows, and never reads more than it was told to or waits longer.

Why not ``providers/http.UpstreamClient``: provider URLs come from the operator's settings and
are trusted; these come from users and are not. Every connection here resolves its host through
``UrlGuard.addresses`` (an aiohttp resolver), so the addresses checked are the addresses the
socket uses, and a DNS answer that changes between a check and the connection (rebinding)
changes nothing. Literal IP addresses, which aiohttp never resolves, are judged by
``UrlGuard.parse`` on the same ``yarl.URL`` object that is sent. Redirects are not followed
unless asked for, and then only for GET and HEAD, each hop checked again.

Bounds: ``seconds`` covers everything (lookup, connect, every hop, the body);
``max_bytes`` of the body are read and the connection is dropped after that. Bodies are not
decompressed (``Accept-Encoding: identity``), so a small gzip bomb stays small.

Failures leave as ``UnsafeUrl`` (refused by the guard), ``TimeoutError`` or ``ConnectionError``
(with a message fit for a delivery log: it never repeats the URL's path or query, where webhook
URLs often keep a token).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from imagegate.errors import UnsafeUrl
from imagegate.outbound.addresses import Allowlist
from imagegate.outbound.guard import UrlGuard
from imagegate.settings import OutboundSettings

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_FOLLOWED_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    """At most ``max_bytes`` of the body."""
    truncated: bool
    """Whether the body went on past ``max_bytes`` (the rest was not read)."""
    url: str
    """The URL that gave this answer (after any redirects followed)."""


class _VettingResolver(AbstractResolver):
    """aiohttp's host lookup, replaced by the guard's: only vetted addresses come back."""

    def __init__(self, guard: UrlGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        results: list[ResolveResult] = []
        for address in await self._guard.addresses(host, port):
            address_family = socket.AF_INET if address.version == 4 else socket.AF_INET6
            if family not in (socket.AF_UNSPEC, address_family):
                continue
            results.append(
                {
                    "hostname": host,
                    "host": str(address),
                    "port": port,
                    "family": address_family,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        return results

    async def close(self) -> None:
        """Nothing to release: lookups run on the loop's executor."""


class OutboundClient:
    """The shared session for user-supplied URLs; built once by the container, closed by it.

    The session is created on first use, inside the running event loop.
    """

    def __init__(self, guard: UrlGuard, *, user_agent: str, max_connections: int = 100) -> None:
        self.guard = guard
        self._user_agent = user_agent
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _pool(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_VettingResolver(self.guard),
                limit=self._max_connections,
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self._user_agent, "Accept-Encoding": "identity"},
                timeout=aiohttp.ClientTimeout(total=None),  # request() bounds the whole exchange
                trust_env=False,  # a proxy from the environment would resolve hosts unvetted
                auto_decompress=False,
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        param: str,
        seconds: float,
        max_bytes: int,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        max_redirects: int = 0,
    ) -> OutboundResponse:
        """Send one request within ``seconds``, lookup to last byte; ``param`` names the URL's
        field in errors. With ``max_redirects`` > 0, GET and HEAD follow that many redirects
        (headers are passed on only within the same origin); otherwise a 3xx is the answer."""
        target = self.guard.parse(url, param=param)
        try:
            async with asyncio.timeout(seconds):
                hops = 0
                while True:
                    response = await self._exchange(method, target, headers, body, max_bytes)
                    location = response.headers.get("Location")
                    if (
                        hops >= max_redirects
                        or location is None
                        or response.status not in _REDIRECT_STATUSES
                        or method.upper() not in _FOLLOWED_METHODS
                    ):
                        return response
                    hops += 1
                    following = self.guard.parse(_join(target, location), param=param)
                    if following.origin() != target.origin():
                        headers = None
                    target = following
        except UnsafeUrl as exc:  # from the resolver, which cannot know the caller's field
            raise UnsafeUrl(exc.message, param=param, code=exc.code) from None
        except TimeoutError:
            raise TimeoutError(f"no complete answer within {seconds:g} s") from None
        except aiohttp.ClientError as exc:
            raise ConnectionError(_describe(exc)) from None

    async def _exchange(
        self,
        method: str,
        target: URL,
        headers: Mapping[str, str] | None,
        body: bytes | None,
        max_bytes: int,
    ) -> OutboundResponse:
        async with self._pool().request(
            method, target, headers=headers, data=body, allow_redirects=False
        ) as response:
            content = bytearray()
            while len(content) <= max_bytes:
                chunk = await response.content.read(max_bytes + 1 - len(content))
                if not chunk:
                    break
                content += chunk
            truncated = len(content) > max_bytes
            if truncated:
                response.close()  # drop the connection rather than read the rest
            body = bytes(content[:max_bytes])
            return OutboundResponse(response.status, response.headers, body, truncated, str(target))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> OutboundClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


def _join(base: URL, location: str) -> URL:
    try:
        return base.join(URL(location))
    except ValueError:
        raise UnsafeUrl("The redirect's Location is not a valid URL") from None


def _describe(exc: aiohttp.ClientError) -> str:
    """What went wrong, without the URL (aiohttp's own messages may carry its path and query)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {cause}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection before answering"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"malformed answer: {exc.message}"
    return f"connection failed ({type(exc).__name__})"


def new_outbound_client(settings: OutboundSettings) -> OutboundClient:
    """The client the container builds once: the guard with the operator's allowlist."""
    guard = UrlGuard(Allowlist.parse(settings.allowlist))
    return OutboundClient(guard, user_agent=settings.user_agent)
