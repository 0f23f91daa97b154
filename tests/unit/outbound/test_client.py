"""The outbound client against real receivers on 127.0.0.1: it connects only to vetted
addresses, re-checks every redirect, and bounds what it reads and how long it waits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from ipaddress import ip_address

import pytest
from tests.support.receivers import answer, endless, receiving, redirect, slow

from imagegate.errors import UnsafeUrl
from imagegate.outbound.addresses import Allowlist, IPAddress
from imagegate.outbound.client import OutboundClient, new_outbound_client
from imagegate.outbound.guard import HostLookup, UrlGuard
from imagegate.settings import OutboundSettings

LOOPBACK = Allowlist.parse(["127.0.0.1"])

ClientFactory = Callable[..., OutboundClient]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    made: list[OutboundClient] = []

    def make(allowlist: Allowlist = LOOPBACK, lookup: HostLookup | None = None) -> OutboundClient:
        guard = UrlGuard(allowlist, lookup) if lookup else UrlGuard(allowlist)
        made.append(OutboundClient(guard, user_agent="imagegate-test"))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


async def test_an_allowlisted_receiver_gets_the_request(make_client: ClientFactory) -> None:
    async with receiving(answer(201, b"created")) as receiver:
        response = await make_client().request(
            "POST",
            receiver.url("/in"),
            param="webhook",
            seconds=5,
            max_bytes=1024,
            headers={"X-Test": "1"},
            body=b'{"a": 1}',
        )
    assert (response.status, response.body, response.truncated) == (201, b"created", False)
    [received] = receiver.requests
    assert (received.method, received.path, received.body) == ("POST", "/in", b'{"a": 1}')
    assert received.headers["x-test"] == "1"
    assert received.headers["user-agent"] == "imagegate-test"
    assert received.headers["accept-encoding"] == "identity"


async def test_loopback_is_refused_before_connecting_without_the_allowlist(
    make_client: ClientFactory,
) -> None:
    client = make_client(Allowlist())
    async with receiving() as receiver:
        for url in (receiver.url(), receiver.url().replace("127.0.0.1", "localhost")):
            with pytest.raises(UnsafeUrl) as caught:
                await client.request("GET", url, param="webhook", seconds=5, max_bytes=0)
            assert caught.value.param == "webhook"
            assert "loopback" in caught.value.message
    assert receiver.requests == []


async def test_a_dns_answer_that_changes_after_the_check_cannot_reach_loopback(
    make_client: ClientFactory,
) -> None:
    """DNS rebinding: the name looks public when checked, then points at 127.0.0.1 when the
    connection resolves it. The connection's own lookup is the one that is vetted."""
    answers = iter(["93.184.216.34", "127.0.0.1"])

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        return [ip_address(next(answers, "127.0.0.1"))]

    client = make_client(Allowlist(), rebinding)
    async with receiving() as receiver:
        url = receiver.url().replace("127.0.0.1", "rebind.example")
        await client.guard.check(url, param="webhook")  # passes: the first answer is public
        with pytest.raises(UnsafeUrl, match="loopback"):
            await client.request("POST", url, param="webhook", seconds=5, max_bytes=0, body=b"{}")
    assert receiver.requests == []


async def test_a_name_resolving_to_an_allowlisted_address_connects_there(
    make_client: ClientFactory,
) -> None:
    async def to_loopback(host: str, port: int) -> list[IPAddress]:
        return [ip_address("127.0.0.1")]

    client = make_client(LOOPBACK, to_loopback)
    async with receiving(answer(204)) as receiver:
        url = receiver.url("/named").replace("127.0.0.1", "hooks.example")
        response = await client.request("GET", url, param="webhook", seconds=5, max_bytes=0)
    assert response.status == 204
    assert [r.path for r in receiver.requests] == ["/named"]
    assert receiver.requests[0].headers["host"].startswith("hooks.example:")


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::ffff:127.0.0.2]/",
        "http://[::1]/",
        "file:///etc/passwd",
    ],
)
async def test_a_followed_redirect_to_a_refused_address_is_refused(
    make_client: ClientFactory, location: str
) -> None:
    async with receiving(redirect(location)) as receiver:
        with pytest.raises(UnsafeUrl) as caught:
            await make_client().request(
                "GET", receiver.url(), param="image_url", seconds=5, max_bytes=1024, max_redirects=3
            )
    assert caught.value.param == "image_url"
    assert len(receiver.requests) == 1


async def test_redirects_to_allowed_places_are_followed_up_to_the_limit(
    make_client: ClientFactory,
) -> None:
    async with receiving(redirect("/second"), redirect("/third"), answer(200, b"end")) as receiver:
        followed = await make_client().request(
            "GET", receiver.url("/first"), param="u", seconds=5, max_bytes=64, max_redirects=2
        )
        assert (followed.status, followed.body) == (200, b"end")
        assert followed.url == receiver.url("/third")
    async with receiving(redirect("/second")) as receiver:
        not_followed = await make_client().request(
            "POST", receiver.url("/first"), param="u", seconds=5, max_bytes=64, max_redirects=2
        )
    assert not_followed.status == 302  # only GET and HEAD follow
    assert [r.path for r in receiver.requests] == ["/first"]


async def test_an_endless_body_is_cut_off_at_max_bytes(make_client: ClientFactory) -> None:
    async with receiving(endless()) as receiver:
        response = await make_client().request(
            "GET", receiver.url(), param="u", seconds=30, max_bytes=10_000
        )
    assert response.status == 200
    assert response.body == b"x" * 10_000
    assert response.truncated


async def test_a_slow_receiver_times_out(make_client: ClientFactory) -> None:
    async with receiving(slow(30)) as receiver:
        with pytest.raises(TimeoutError, match=r"within 0\.2 s"):
            await make_client().request("GET", receiver.url(), param="u", seconds=0.2, max_bytes=0)


async def test_connection_failures_do_not_repeat_the_url(make_client: ClientFactory) -> None:
    async with receiving() as receiver:
        closed = receiver.url("/secret-token-123?key=abc")
    with pytest.raises(ConnectionError) as caught:
        await make_client().request("POST", closed, param="u", seconds=5, max_bytes=0)
    assert "cannot connect to 127.0.0.1" in str(caught.value)
    assert "secret-token-123" not in str(caught.value)
    assert "abc" not in str(caught.value)


async def test_the_container_builds_it_from_the_settings_slice() -> None:
    settings = OutboundSettings(allowlist=["127.0.0.1"], user_agent="ua/1")
    async with new_outbound_client(settings) as client, receiving() as receiver:
        await client.request("GET", receiver.url(), param="u", seconds=5, max_bytes=0)
    assert receiver.requests[0].headers["user-agent"] == "ua/1"


async def test_a_redirect_to_a_name_resolving_to_the_metadata_service_is_refused(
    make_client: ClientFactory,
) -> None:
    """The first hop is the allowlisted loopback receiver; the redirect names a host whose DNS
    answer is 169.254.169.254: the re-check after the redirect resolves and refuses it."""

    async def dns(host: str, port: int) -> list[IPAddress]:
        return [ip_address("169.254.169.254" if host == "sneaky.example" else "127.0.0.1")]

    client = make_client(LOOPBACK, dns)
    async with receiving(redirect("http://sneaky.example/latest/meta-data/")) as receiver:
        with pytest.raises(UnsafeUrl, match="cloud metadata") as caught:
            await client.request(
                "GET", receiver.url(), param="image_url", seconds=5, max_bytes=64, max_redirects=3
            )
    assert "169.254.169.254" not in caught.value.message
    assert len(receiver.requests) == 1
