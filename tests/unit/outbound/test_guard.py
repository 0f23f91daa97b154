"""The SSRF guard on URLs and host lookups (real resolution of ``localhost``; a fake DNS where a
name must answer with addresses no real name here has)."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from ipaddress import ip_address

import pytest

from imagegate.errors import InvalidRequest, UnsafeUrl
from imagegate.outbound.addresses import Allowlist, IPAddress
from imagegate.outbound.guard import UrlGuard


def fake_dns(answers: dict[str, Sequence[str]]) -> UrlGuard:
    """A guard whose lookups answer from ``answers`` (unknown names do not resolve)."""

    async def lookup(host: str, port: int) -> list[IPAddress]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ip_address(a) for a in answers[host]]

    return UrlGuard(Allowlist(), lookup)


REFUSED_ON_SIGHT = [
    ("ftp://example.com/hook", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("gopher://example.com/", "http:// or https://"),
    ("javascript:alert(1)", "http:// or https://"),
    ("example.com/hook", "http:// or https://"),
    ("http:///hook", "no host"),
    ("http://user:secret@example.com/hook", "credentials"),
    ("http://user@example.com/hook", "credentials"),
    ("http://:pw@example.com/hook", "credentials"),
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://10.0.0.5/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.1.1/", "carrier-grade NAT"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:a9fe:a9fe]/", "cloud metadata"),
    ("http://[fd00:ec2::254]/", "cloud metadata"),
    ("http://[fe80::1]/", "link-local"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata"),
    ("http://METADATA.Google.Internal./", "cloud metadata"),
    ("http://2130706433/", "canonical"),
    ("http://0x7f000001/", "canonical"),
    ("http://127.1/", "canonical"),
    ("http://0177.0.0.1/", "canonical"),
    ("http://evil.example\\@127.0.0.1/", "not valid"),
    ("http://example.com:99999/", "not valid"),
    ("https://example.com/" + "a" * 2100, "longer than 2048"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED_ON_SIGHT)
def test_urls_that_no_dns_answer_can_make_safe_are_refused_at_once(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        UrlGuard(Allowlist()).parse(url, param="webhook")
    error = caught.value
    assert isinstance(error, InvalidRequest)  # a 400 in the OpenAI shape
    assert (error.status, error.code, error.param) == (400, "unsafe_url", "webhook")
    assert why in error.message


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hooks/imagegate?token=abc",
        "HTTPS://Example.COM/hook",
        "http://93.184.216.34:8080/hook",
        "https://[2606:4700:4700::1111]/hook",
        "https://bücher.example/hook",
        "https://hooks.example./hook",
    ],
)
def test_ordinary_public_urls_pass_unchanged(url: str) -> None:
    parsed = UrlGuard(Allowlist()).parse(url, param="webhook")
    assert parsed.scheme in ("http", "https")
    assert parsed.path.startswith("/hook")


async def test_a_name_that_resolves_to_loopback_is_refused() -> None:
    with pytest.raises(UnsafeUrl) as caught:
        await UrlGuard(Allowlist()).check("http://localhost:8000/hook", param="webhook")
    assert "loopback" in caught.value.message
    assert "127.0.0.1" not in caught.value.message  # internal DNS answers are not echoed


@pytest.mark.parametrize("entry", ["localhost", "127.0.0.0/8", "127.0.0.1"])
async def test_the_allowlist_lets_loopback_through(entry: str) -> None:
    guard = UrlGuard(Allowlist.parse([entry]))
    vetted = await guard.check("http://localhost:8000/hook", param="webhook")
    assert ip_address("127.0.0.1") in vetted.addresses


async def test_a_name_on_the_allowlist_does_not_open_its_addresses_to_other_urls() -> None:
    by_network = UrlGuard(Allowlist.parse(["127.0.0.1"]))
    assert by_network.parse("http://127.0.0.1:8000/hook", param="webhook").port == 8000
    by_name = UrlGuard(Allowlist.parse(["localhost"]))
    with pytest.raises(UnsafeUrl, match="loopback"):
        by_name.parse("http://127.0.0.1:8000/hook", param="webhook")


async def test_one_private_answer_among_public_ones_refuses_the_name() -> None:
    guard = fake_dns({"mixed.example": ["93.184.216.34", "10.0.0.7"]})
    with pytest.raises(UnsafeUrl, match="private"):
        await guard.check("https://mixed.example/hook", param="webhook")


async def test_a_name_resolving_to_the_metadata_service_is_refused() -> None:
    guard = fake_dns(
        {"sneaky.example": ["169.254.169.254"], "mapped.example": ["::ffff:a9fe:a9fe"]}
    )
    for host in ("sneaky.example", "mapped.example"):
        with pytest.raises(UnsafeUrl, match="cloud metadata"):
            await guard.check(f"http://{host}/", param="webhook")


async def test_a_public_name_passes_with_its_addresses() -> None:
    guard = fake_dns({"hooks.example": ["93.184.216.34", "2606:2800:220:1::248"]})
    vetted = await guard.check("https://hooks.example/hook", param="webhook")
    assert [str(a) for a in vetted.addresses] == ["93.184.216.34", "2606:2800:220:1::248"]
    assert vetted.url.host == "hooks.example"


async def test_a_name_that_does_not_resolve_is_refused_with_its_own_code() -> None:
    with pytest.raises(UnsafeUrl) as caught:
        await fake_dns({}).check("https://nowhere.example/hook", param="webhook")
    assert caught.value.code == "unresolvable_host"
    assert caught.value.param == "webhook"


async def test_a_host_allowlisted_by_name_may_resolve_anywhere() -> None:
    async def lookup(host: str, port: int) -> list[IPAddress]:
        return [ip_address("10.20.30.40")]

    guard = UrlGuard(Allowlist.parse(["hooks.internal"]), lookup)
    vetted = await guard.check("http://hooks.internal/hook", param="webhook")
    assert vetted.addresses == (ip_address("10.20.30.40"),)
    with pytest.raises(UnsafeUrl):
        await guard.check("http://other.internal/hook", param="webhook")
