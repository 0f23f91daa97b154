"""The SSRF guard: whether a user-supplied URL may be called, and the addresses it may use.

Two checks, both here so they cannot drift apart:

- ``UrlGuard.parse`` looks at the URL alone: http or https, a host, no ``user:password@``, not a
  metadata host name, and a literal IP address (``http://10.0.0.1/``, ``http://[::ffff:7f00:1]/``)
  judged at once. It returns the ``yarl.URL`` that the HTTP client is then given, so the host
  that was checked is byte for byte the host that is connected to (no second parser to disagree).
- ``UrlGuard.addresses`` resolves a host name (``loop.getaddrinfo``) and refuses it if *any*
  address is blocked (a name that answers with one public and one private address is how DNS
  rebinding hides). ``OutboundClient`` calls it from its resolver, at connection time, so the
  addresses vetted are exactly the ones the socket connects to; ``check`` runs both steps ahead
  of time to refuse a bad URL with a 400 when it is submitted.

Exceptions come from the ``Allowlist``: a host allowlisted by name skips the address check, an
address inside an allowlisted network passes it.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address

from yarl import URL

from imagegate.errors import UnsafeUrl
from imagegate.outbound.addresses import (
    METADATA_HOSTS,
    Allowlist,
    IPAddress,
    blocked_reason,
    normalize_host,
)

MAX_URL_LENGTH = 2048

HostLookup = Callable[[str, int], Awaitable[Sequence[IPAddress]]]
"""Resolves (host, port) to addresses; ``system_lookup`` unless a test brings its own DNS."""

_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")


async def system_lookup(host: str, port: int) -> list[IPAddress]:
    """The operating system's resolver, off the event loop (``loop.getaddrinfo``)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


@dataclass(frozen=True, slots=True)
class VettedUrl:
    """A URL that passed the guard, with the addresses its host resolved to when it did."""

    url: URL
    addresses: tuple[IPAddress, ...]


class UrlGuard:
    """Refuses URLs and addresses an outbound request must not reach (see the module docstring)."""

    def __init__(self, allowlist: Allowlist, lookup: HostLookup = system_lookup) -> None:
        self.allowlist = allowlist
        self._lookup = lookup

    def parse(self, url: str | URL, *, param: str) -> URL:
        """The URL to connect to, or ``UnsafeUrl`` for one that no DNS answer could make safe."""
        text = str(url)
        if len(text) > MAX_URL_LENGTH:
            raise UnsafeUrl(f"The URL is longer than {MAX_URL_LENGTH} characters", param=param)
        try:
            parsed = url if isinstance(url, URL) else URL(text)
        except ValueError as exc:
            raise UnsafeUrl(f"The URL is not valid: {exc}", param=param) from None
        if parsed.scheme not in ("http", "https"):
            raise UnsafeUrl("The URL must start with http:// or https://", param=param)
        host = parsed.raw_host
        if not host:
            raise UnsafeUrl("The URL has no host", param=param)
        if parsed.raw_user is not None or parsed.raw_password is not None:
            raise UnsafeUrl(
                "The URL must not carry credentials (user:password@); put a token in the "
                "path instead",
                param=param,
            )
        if self.allowlist.allows_host(host):
            return parsed
        literal = _ip_literal(host)
        if literal is not None:
            self._vet(host, [literal], param)
        elif normalize_host(host) in METADATA_HOSTS:
            raise UnsafeUrl("The URL points at a cloud metadata service", param=param)
        elif _NUMERIC_LABEL.fullmatch(normalize_host(host).rsplit(".", 1)[-1]):
            # 2130706433, 0x7f.1, 127.1: legacy spellings resolvers turn into addresses.
            raise UnsafeUrl(f"The URL's host {host!r} is not a canonical IP address", param=param)
        return parsed

    async def addresses(self, host: str, port: int, *, param: str | None = None) -> list[IPAddress]:
        """Resolve ``host`` and return its addresses if every one of them may be reached.

        Lookup failures propagate as ``OSError`` (``socket.gaierror``): a name that does not
        resolve is a connection failure, not an unsafe URL.
        """
        literal = _ip_literal(host)
        found = [literal] if literal is not None else list(await self._lookup(host, port))
        if not self.allowlist.allows_host(host):
            self._vet(host, found, param)
        return found

    async def check(self, url: str, *, param: str) -> VettedUrl:
        """Both checks ahead of a request: for refusing a URL with a 400 when it is submitted."""
        parsed = self.parse(url, param=param)
        host, port = parsed.raw_host, parsed.port
        assert host is not None  # parse() refused URLs without one
        assert port is not None  # yarl fills in the scheme's default
        try:
            found = await self.addresses(host, port, param=param)
        except OSError:
            raise UnsafeUrl(
                f"The URL's host {host!r} does not resolve", param=param, code="unresolvable_host"
            ) from None
        return VettedUrl(parsed, tuple(found))

    def _vet(self, host: str, found: Sequence[IPAddress], param: str | None) -> None:
        if not found:
            raise UnsafeUrl(f"The URL's host {host!r} has no address", param=param)
        for address in found:
            reason = blocked_reason(address)
            if reason is not None and not self.allowlist.allows_address(address):
                # The address itself is not named: it would tell a caller what internal
                # names resolve to.
                raise UnsafeUrl(
                    f"The URL points at a {reason} address; outbound requests may only reach "
                    "public addresses unless IMAGEGATE_OUTBOUND__ALLOWLIST names it",
                    param=param,
                )


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return None
