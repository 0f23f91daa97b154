"""Which IP addresses an outbound request may reach: a pure table, and the operator's exceptions.

Anything a user can point imagegate at (a webhook URL) must not reach the machine itself, the
private network it runs in or the cloud's metadata service, which hands out credentials
(server-side request forgery). ``blocked_reason`` names what an address is, or ``None`` for an
ordinary public one. IPv6 addresses that embed an IPv4 address (mapped ``::ffff:a.b.c.d``,
NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by the address they embed, since that is
where the packets would go.

The ranges are spelled out here rather than taken from ``ipaddress``'s ``is_private`` and
friends, whose meaning has changed between Python versions: the table below is the contract,
and its tests pin it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from imagegate.errors import ConfigurationError

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ip_address("169.254.169.254"),  # AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack
        ip_address("169.254.170.2"),  # AWS ECS task metadata and credentials
        ip_address("100.100.100.200"),  # Alibaba Cloud
        ip_address("192.0.0.192"),  # Oracle Cloud (legacy)
        ip_address("fd00:ec2::254"),  # AWS over IPv6
    }
)
"""Cloud instance-metadata endpoints: refused even inside an allowlisted network, unless the
allowlist names the address itself."""

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
"""Names of metadata services, refused before any lookup (unless allowlisted by name)."""

_V4_BLOCKED: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
        ("192.0.2.0/24", "reserved"),  # documentation
        ("192.88.99.0/24", "reserved"),  # 6to4 relay anycast
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),  # benchmarking
        ("198.51.100.0/24", "reserved"),  # documentation
        ("203.0.113.0/24", "reserved"),  # documentation
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes the broadcast address
    )
)

_V6_BLOCKED: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), reason)
    for net, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "private"),  # local-use NAT64
        ("100::/64", "reserved"),  # discard-only
        ("2001::/23", "reserved"),  # IETF protocol assignments (Teredo, ORCHID, ...)
        ("2001:db8::/32", "reserved"),  # documentation
        ("3fff::/20", "reserved"),  # documentation
        ("fc00::/7", "private"),  # unique local
        ("fe80::/10", "link-local"),
        ("fec0::/10", "link-local"),  # site-local, deprecated
        ("ff00::/8", "multicast"),
    )
)
_V6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_NAT64 = IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, when it is one of the embedding forms."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def canonical(address: IPAddress) -> IPAddress:
    """The address packets would really go to: embedded IPv4 unwrapped, IPv6 zone dropped."""
    if isinstance(address, IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            return inner
        if address.scope_id is not None:
            return IPv6Address(int(address))
    return address


def blocked_reason(address: IPAddress) -> str | None:
    """What makes ``address`` unfit for a user-supplied URL (``"loopback"``, ``"private"``,
    ``"cloud metadata"``, ...), or ``None`` when it is an ordinary public address."""
    address = canonical(address)
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(address, IPv4Address):
        return next((reason for net, reason in _V4_BLOCKED if address in net), None)
    for net, reason in _V6_BLOCKED:
        if address in net:
            return reason
    # Outside 2000::/3 nothing is assigned for ordinary public use.
    return None if address in _V6_GLOBAL_UNICAST else "reserved"


_HOST_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_-]+")


def normalize_host(host: str) -> str:
    """The form host names are compared in: lower case, no trailing dot."""
    return host.lower().rstrip(".")


@dataclass(frozen=True, slots=True)
class Allowlist:
    """The operator's exceptions to the guard (``IMAGEGATE_OUTBOUND__ALLOWLIST``), for tests and
    private deployments: host names accepted whatever they resolve to, and networks whose
    addresses are accepted although blocked. It only ever widens: nothing here is required."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(
        cls, entries: Iterable[str], setting: str = "IMAGEGATE_OUTBOUND__ALLOWLIST"
    ) -> Allowlist:
        """Read entries: a CIDR or a single address is a network, anything else a host name."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip()
            try:
                networks.append(ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = normalize_host(entry)
            if not _HOST_NAME.fullmatch(name) or "/" in entry:
                raise ConfigurationError(
                    f"{setting}: {raw!r} is neither a host name nor an IP network "
                    "(examples: hooks.internal, 10.0.0.0/8, 127.0.0.1, ::1)",
                    param=setting,
                )
            hosts.add(name)
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return normalize_host(host) in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        """Whether an allowlisted network holds ``address``. A metadata address needs an entry
        that is exactly that address: a broad private range does not let it through."""
        address = canonical(address)
        if address in METADATA_ADDRESSES:
            return any(net.num_addresses == 1 and address in net for net in self.networks)
        return any(address in net for net in self.networks)
