"""Which addresses a user-supplied URL may reach, and the operator's allowlist."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from imagegate.errors import ConfigurationError
from imagegate.outbound.addresses import Allowlist, blocked_reason

BLOCKED = [
    # IPv4
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("169.254.0.1", "link-local"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.10", "reserved"),
    ("192.168.1.1", "private"),
    ("198.18.0.1", "reserved"),
    ("198.51.100.7", "reserved"),
    ("203.0.113.9", "reserved"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    # IPv6
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("fe80::1%2", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "link-local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fd00:ec2::254", "cloud metadata"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "reserved"),
    ("100::1", "reserved"),
    ("::2", "reserved"),
    ("4000::1", "reserved"),
    ("64:ff9b:1::1", "private"),
    # IPv6 spellings of IPv4 addresses are judged by the IPv4 address
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:7f00:1", "loopback"),
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:100.64.0.1", "carrier-grade NAT"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 of 169.254.169.254
    ("64:ff9b::7f00:1", "loopback"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
]

PUBLIC = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "100.63.255.255",  # just below carrier-grade NAT
    "100.128.0.0",  # just above it
    "172.15.255.255",
    "172.32.0.0",
    "169.253.255.255",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_addresses_outside_the_public_internet_are_named(address: str, reason: str) -> None:
    assert blocked_reason(ip_address(address)) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ip_address(address)) is None


def test_allowlisted_networks_widen_the_guard_and_nothing_else() -> None:
    allowlist = Allowlist.parse(["127.0.0.1", "10.1.0.0/16", "::1", "Hooks.Internal."])
    assert allowlist.hosts == frozenset({"hooks.internal"})
    assert allowlist.allows_host("HOOKS.internal.")
    assert not allowlist.allows_host("other.internal")
    for address in ("127.0.0.1", "::ffff:127.0.0.1", "10.1.200.3", "::1"):
        assert allowlist.allows_address(ip_address(address)), address
    for address in ("127.0.0.2", "10.2.0.1", "192.168.0.1"):
        assert not allowlist.allows_address(ip_address(address)), address


def test_a_metadata_address_needs_an_entry_of_its_own() -> None:
    metadata = ip_address("169.254.169.254")
    assert not Allowlist.parse(["169.254.0.0/16"]).allows_address(metadata)
    assert not Allowlist.parse(["fd00::/8"]).allows_address(ip_address("fd00:ec2::254"))
    assert Allowlist.parse(["169.254.0.0/16"]).allows_address(ip_address("169.254.1.1"))
    assert Allowlist.parse(["169.254.169.254"]).allows_address(metadata)
    assert Allowlist.parse(["169.254.169.254/32"]).allows_address(
        ip_address("::ffff:169.254.169.254")
    )


@pytest.mark.parametrize("entry", ["http://hooks.internal", "10.0.0.0/33", "", "two words", "a..b"])
def test_a_bad_allowlist_entry_stops_start_up_naming_the_setting(entry: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Allowlist.parse(["localhost", entry])
    assert caught.value.param == "IMAGEGATE_OUTBOUND__ALLOWLIST"
    assert repr(entry) in caught.value.message
