"""Webhook signing, the retry schedule, and deliveries to real receivers on 127.0.0.1.

Signatures are checked with an implementation written here from the Standard Webhooks spec
(hmac + hashlib), never with the module's own ``verify``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support.receivers import Received, answer, endless, receiving, redirect, slow

from imagegate.outbound.addresses import Allowlist
from imagegate.outbound.client import OutboundClient
from imagegate.outbound.guard import UrlGuard
from imagegate.queue.webhooks import (
    RETRY_WINDOW_SECONDS,
    WebhookSender,
    generate_secret,
    next_retry_delay,
    sign,
    verify,
)
from imagegate.settings import WebhookSettings

README = Path(__file__).parents[3] / "README.md"

# The Standard Webhooks reference vector, as every implementation of the spec tests it.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

BODY = b'{"type":"job.succeeded","data":{"id":"job_1","status":"succeeded"}}'


def independently_verified(secret: str, received: Received) -> bool:
    """The receiver's side, from the spec: HMAC-SHA256 over "{id}.{timestamp}.{body}"."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = (
        f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}.".encode()
        + received.body
    )
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(expected, sig) for sig in received.headers["webhook-signature"].split()
    )


def sender(
    allowlist: Allowlist, timeout_seconds: float = 5, max_response_bytes: int = 4096
) -> tuple[WebhookSender, OutboundClient]:
    client = OutboundClient(UrlGuard(allowlist), user_agent="imagegate-test")
    settings = WebhookSettings(
        timeout_seconds=timeout_seconds, max_response_bytes=max_response_bytes
    )
    return WebhookSender(client, settings), client


@pytest.fixture
async def loopback_sender() -> AsyncIterator[WebhookSender]:
    webhooks, client = sender(Allowlist.parse(["127.0.0.1"]), timeout_seconds=5)
    yield webhooks
    await client.aclose()


# Signing


def test_signatures_match_the_spec_reference_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_secrets_are_whsec_and_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second
    for secret in (first, second):
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_event_ids_with_a_dot_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        sign(generate_secret(), "job.1", 1, b"{}")


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!"])
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        sign(secret, "msg_1", 1, b"{}")


def _spec_headers(signature: str = SPEC_SIGNATURE, stamp: int = SPEC_TIMESTAMP) -> dict[str, str]:
    return {
        "Webhook-Id": SPEC_ID,
        "Webhook-Timestamp": str(stamp),
        "Webhook-Signature": signature,
    }


def test_verify_accepts_the_reference_and_refuses_tampering() -> None:
    now = SPEC_TIMESTAMP + 10
    assert verify(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=now)
    rotated = f"v1,{base64.b64encode(b'x' * 32).decode()} {SPEC_SIGNATURE}"
    assert verify(SPEC_SECRET, _spec_headers(rotated), SPEC_BODY, now=now)
    assert not verify(SPEC_SECRET, _spec_headers(), SPEC_BODY + b" ", now=now)
    assert not verify(generate_secret(), _spec_headers(), SPEC_BODY, now=now)
    assert not verify(SPEC_SECRET, _spec_headers(stamp=SPEC_TIMESTAMP + 1), SPEC_BODY, now=now)
    assert not verify(SPEC_SECRET, _spec_headers("v1,é"), SPEC_BODY, now=now)
    assert not verify(SPEC_SECRET, {}, SPEC_BODY, now=now)
    malformed_stamp = {**_spec_headers(), "Webhook-Timestamp": "²"}  # a digit int() refuses
    assert not verify(SPEC_SECRET, malformed_stamp, SPEC_BODY, now=now)


def test_verify_refuses_old_and_future_timestamps() -> None:
    assert not verify(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP + 301)
    assert not verify(SPEC_SECRET, _spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP - 301)
    assert verify(
        SPEC_SECRET, _spec_headers(), SPEC_BODY, now=SPEC_TIMESTAMP + 3600, tolerance_seconds=3601
    )


# The retry schedule


def test_retries_back_off_then_give_up_after_24_hours() -> None:
    no_jitter = [next_retry_delay(n, rng=_Fixed(0.0)) for n in range(1, 10)]
    assert no_jitter == [5, 300, 1800, 7200, 18000, 36000, 23095, None, None]
    assert sum(d for d in no_jitter if d is not None) == RETRY_WINDOW_SECONDS


def test_jitter_only_shortens_waits_so_the_window_holds() -> None:
    rng = random.Random(7)
    for _ in range(200):
        delays = []
        attempt = 1
        while (delay := next_retry_delay(attempt, rng=rng)) is not None:
            delays.append(delay)
            attempt += 1
        assert attempt == 8  # eight attempts in all
        assert sum(delays) <= RETRY_WINDOW_SECONDS
        nominal = [5, 300, 1800, 7200, 18000, 36000, 23095]
        assert all(0.8 * n <= d <= n for d, n in zip(delays, nominal, strict=True))
    spread = {next_retry_delay(3) for _ in range(20)}
    assert len(spread) > 1


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        next_retry_delay(0)


class _Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self._value = value

    def random(self) -> float:
        return self._value


# Deliveries


async def test_a_delivery_is_signed_so_the_receiver_can_verify_it(
    loopback_sender: WebhookSender,
) -> None:
    secret = generate_secret()
    async with receiving(answer(200, b"thanks")) as receiver:
        result = await loopback_sender.deliver(receiver.url(), secret, "evt_123", BODY)
    assert result.delivered
    assert (result.status, result.error, result.retryable) == (200, None, False)
    assert result.response_excerpt == "thanks"
    assert result.attempt == 1
    [received] = receiver.requests
    assert received.method == "POST"
    assert received.body == BODY
    assert received.headers["content-type"] == "application/json"
    assert received.headers["webhook-id"] == "evt_123"
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 60
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", received.headers["webhook-signature"])
    assert independently_verified(secret, received)
    assert not independently_verified(generate_secret(), received)


async def test_a_500_is_a_failed_attempt_and_the_retry_is_delivered(
    loopback_sender: WebhookSender,
) -> None:
    secret = generate_secret()
    async with receiving(answer(500, b"oops"), answer(200)) as receiver:
        first = await loopback_sender.deliver(receiver.url(), secret, "evt_9", BODY)
        assert not first.delivered
        assert (first.status, first.error, first.retryable) == (500, "HTTP 500", True)
        assert first.response_excerpt == "oops"
        assert next_retry_delay(first.attempt) is not None
        second = await loopback_sender.deliver(receiver.url(), secret, "evt_9", BODY, attempt=2)
    assert second.delivered
    assert second.attempt == 2
    assert [r.headers["webhook-id"] for r in receiver.requests] == ["evt_9", "evt_9"]
    assert all(independently_verified(secret, r) for r in receiver.requests)


async def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt() -> None:
    webhooks, client = sender(Allowlist.parse(["127.0.0.1"]), timeout_seconds=0.3)
    async with client, receiving(slow(30)) as receiver:
        result = await webhooks.deliver(receiver.url(), generate_secret(), "evt_1", BODY)
    assert not result.delivered
    assert result.status is None
    assert result.error == "no complete answer within 0.3 s"
    assert result.retryable


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_is_refused_without_the_allowlist_and_reached_with_it(host: str) -> None:
    async with receiving() as receiver:
        url = receiver.url().replace("127.0.0.1", host)
        closed, closed_client = sender(Allowlist())
        async with closed_client:
            refused = await closed.deliver(url, generate_secret(), "evt_1", BODY)
        assert not refused.delivered
        assert refused.error is not None
        assert refused.error.startswith("refused: The URL points at a loopback address")
        assert receiver.requests == []
        opened, opened_client = sender(Allowlist.parse([host]))
        async with opened_client:
            accepted = await opened.deliver(url, generate_secret(), "evt_1", BODY)
    assert accepted.delivered
    assert len(receiver.requests) == 1


async def test_a_url_refused_on_its_face_is_not_retried() -> None:
    webhooks, client = sender(Allowlist())
    async with client:
        for url in ("http://169.254.169.254/latest/", "ftp://example.com/", "http://u:p@x.test/"):
            result = await webhooks.deliver(url, generate_secret(), "evt_1", BODY)
            assert (result.delivered, result.retryable, result.status) == (False, False, None)
            assert result.error is not None
            assert result.error.startswith("refused: ")


async def test_redirects_are_not_followed(loopback_sender: WebhookSender) -> None:
    async with receiving(redirect("http://169.254.169.254/latest/meta-data/")) as receiver:
        result = await loopback_sender.deliver(receiver.url(), generate_secret(), "evt_1", BODY)
    assert not result.delivered
    assert result.status == 302
    assert result.error is not None
    assert "redirects are not followed" in result.error
    assert result.retryable
    assert len(receiver.requests) == 1


async def test_an_oversized_answer_is_cut_to_the_excerpt_size() -> None:
    webhooks, client = sender(
        Allowlist.parse(["127.0.0.1"]), timeout_seconds=30, max_response_bytes=100
    )
    async with client, receiving(endless(b"y" * 65536)) as receiver:
        result = await webhooks.deliver(receiver.url(), generate_secret(), "evt_1", BODY)
    assert result.delivered
    assert result.response_excerpt == "y" * 100


async def test_a_refused_connection_is_a_failed_attempt(loopback_sender: WebhookSender) -> None:
    async with receiving() as receiver:
        url = receiver.url("/hook?token=s3cret")
    result = await loopback_sender.deliver(url, generate_secret(), "evt_1", BODY)
    assert (result.delivered, result.status, result.retryable) == (False, None, True)
    assert result.error is not None
    assert "cannot connect to 127.0.0.1" in result.error
    assert "s3cret" not in result.error


async def test_the_readme_receiver_snippet_verifies_a_real_delivery(
    loopback_sender: WebhookSender,
) -> None:
    """The verification code users copy from README.md works on what imagegate sends."""
    snippet = README.read_text().split("<!-- webhook-verify -->")[1].split("```python")[1]
    namespace: dict[str, object] = {}
    exec(snippet.split("```")[0], namespace)  # noqa: S102 (our own README)
    is_authentic = namespace["is_authentic"]
    assert callable(is_authentic)
    secret = generate_secret()
    async with receiving() as receiver:
        await loopback_sender.deliver(receiver.url(), secret, "evt_readme", BODY)
    [received] = receiver.requests
    assert is_authentic(secret, received.headers, received.body)
    assert not is_authentic(secret, received.headers, received.body + b"!")
    assert not is_authentic(generate_secret(), received.headers, received.body)
    assert not is_authentic(secret, {**received.headers, "webhook-timestamp": "²"}, received.body)
