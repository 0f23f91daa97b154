"""Webhook deliveries, signed the Standard Webhooks way (https://www.standardwebhooks.com).

Each delivery is a POST of JSON bytes with three headers:

- ``webhook-id``: the event's id, the same on every retry (receivers de-duplicate on it);
- ``webhook-timestamp``: when this attempt was signed, integer Unix seconds (receivers refuse
  old ones, which stops replays);
- ``webhook-signature``: ``v1,`` + base64 of HMAC-SHA256 over ``{id}.{timestamp}.{body}``, keyed
  with the base64-decoded part of the secret after ``whsec_``.

Signing is written out here rather than taken from the ``standardwebhooks`` package: the scheme
is one HMAC over three joined parts, fewer lines than a dependency's pin; the tests check it
against an independent implementation and the spec's format.

A delivery succeeds on any 2xx. Anything else (another status, a redirect, a timeout, a
connection failure) is a failed attempt, retried on the schedule of ``next_retry_delay`` for
up to 24 hours; the caller records each ``DeliveryResult`` and schedules the retry. Redirects
are not followed, as the spec advises: the receiver should be given its final URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from imagegate.errors import UnsafeUrl
from imagegate.outbound.client import OutboundClient, OutboundResponse
from imagegate.settings import WebhookSettings

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32
"""The spec asks for 24 to 64 random bytes."""
DEFAULT_TOLERANCE_SECONDS = 300
"""How old (or how far ahead) a ``webhook-timestamp`` ``verify`` accepts."""

RETRY_SCHEDULE_SECONDS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)
"""Waits after the 1st, 2nd, ... failed attempt: 5 s, 5 min, 30 min, 2 h, 5 h, then 10 h."""
RETRY_WINDOW_SECONDS = 86400.0
"""No attempt is scheduled later than this after the first (the last wait is shortened to end
exactly there)."""
RETRY_JITTER = 0.2
"""Each wait is shortened by up to this fraction at random, so receivers that failed together
are not all retried in the same second, and the window is never overrun."""

URL_PARAM = "webhook"
"""The request field a webhook URL arrives in, named by ``UnsafeUrl``."""


def generate_secret() -> str:
    """A new signing secret, ``whsec_`` + base64 of 32 random bytes: shown to the key's owner
    once, kept by imagegate to sign (unlike API keys it cannot be stored as a hash)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _signing_key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is base64 after its prefix") from None


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one attempt: ``v1,<base64 HMAC-SHA256>``."""
    if "." in event_id:
        # The id is one of the dot-joined parts; a dot in it would let parts shift.
        raise ValueError("a webhook event id must not contain '.'")
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(_signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, event_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether a received webhook is authentic and fresh: what a receiver written in Python
    runs on the raw body (never on re-serialized JSON). Any of the space-separated signatures
    may match, which is how a rotated secret keeps working."""
    lowered = {name.lower(): value for name, value in headers.items()}
    event_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "").split()
    if not event_id or not (stamp.isascii() and stamp.isdigit()) or not signatures:
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance_seconds:
        return False
    try:
        expected = sign(secret, event_id, int(stamp), body).encode()
    except ValueError:
        return False
    return any(hmac.compare_digest(expected, given.encode()) for given in signatures)


def next_retry_delay(attempt: int, *, rng: random.Random | None = None) -> float | None:
    """Seconds to wait after failed attempt number ``attempt`` (1 = the first try), or ``None``
    when the 24-hour window is used up and the delivery should be given up.

    Attempts land at about 0 s, 5 s, 5 min, 35 min, 2 h 35, 7 h 35, 17 h 35 and 24 h: eight in
    all. ``rng`` makes the jitter reproducible in tests.
    """
    if attempt < 1:
        raise ValueError("attempts are counted from 1")
    elapsed = 0.0
    wait = 0.0
    for number in range(1, attempt + 1):
        scheduled = RETRY_SCHEDULE_SECONDS[min(number, len(RETRY_SCHEDULE_SECONDS)) - 1]
        wait = min(scheduled, RETRY_WINDOW_SECONDS - elapsed)
        if wait <= 0:
            return None
        elapsed += wait
    fraction = rng.random() if rng is not None else random.random()
    return wait * (1 - RETRY_JITTER * fraction)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """One attempt, shaped to be stored as a row as it is."""

    attempt: int
    started_at: datetime
    duration_ms: int
    status: int | None
    """The receiver's HTTP status; ``None`` when there was no answer."""
    error: str | None
    """Why the attempt failed (``HTTP 500``, a timeout, a refused URL); ``None`` on success.
    Never contains the URL's path or query, where tokens live."""
    response_excerpt: str
    """The start of the receiver's answer (at most ``max_response_bytes``), for debugging."""
    retryable: bool
    """Whether another attempt may succeed: false once delivered, and for a URL the guard
    refuses on its face (scheme, credentials, a literal private address)."""

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    """Signs and sends deliveries over the shared ``OutboundClient`` (the container owns it)."""

    def __init__(self, client: OutboundClient, settings: WebhookSettings) -> None:
        self._client = client
        self._settings = settings

    async def deliver(
        self, url: str, secret: str, event_id: str, body: bytes, *, attempt: int = 1
    ) -> DeliveryResult:
        """Make one attempt to POST ``body`` (JSON) to ``url``; never raises for anything the
        receiver or the network does."""
        started_at = datetime.now(UTC)
        clock = time.monotonic()
        headers = {
            "Content-Type": "application/json",
            **signed_headers(secret, event_id, int(started_at.timestamp()), body),
        }

        def failed(error: str, *, retryable: bool = True) -> DeliveryResult:
            elapsed = round((time.monotonic() - clock) * 1000)
            return DeliveryResult(attempt, started_at, elapsed, None, error, "", retryable)

        try:
            target = self._client.guard.parse(url, param=URL_PARAM)
        except UnsafeUrl as exc:
            return failed(f"refused: {exc.message}", retryable=False)
        try:
            response = await self._client.request(
                "POST",
                target,
                param=URL_PARAM,
                seconds=self._settings.timeout_seconds,
                max_bytes=self._settings.max_response_bytes,
                headers=headers,
                body=body,
            )
        except UnsafeUrl as exc:  # the host resolved to a refused address
            return failed(f"refused: {exc.message}")
        except (TimeoutError, ConnectionError) as exc:
            return failed(str(exc))
        return self._answered(response, attempt, started_at, clock)

    @staticmethod
    def _answered(
        response: OutboundResponse, attempt: int, started_at: datetime, clock: float
    ) -> DeliveryResult:
        status = response.status
        error = None if 200 <= status < 300 else f"HTTP {status}"
        if 300 <= status < 400:
            error = f"HTTP {status}: redirects are not followed; give the webhook its final URL"
        return DeliveryResult(
            attempt=attempt,
            started_at=started_at,
            duration_ms=round((time.monotonic() - clock) * 1000),
            status=status,
            error=error,
            response_excerpt=response.body.decode("utf-8", errors="replace"),
            retryable=error is not None,
        )
