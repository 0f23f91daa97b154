"""Idempotency keys: a retried request gets the first answer instead of a second generation.

The first request with a key claims it (an INSERT keyed by user and key, see the repository),
runs, and stores its response for ``ttl_seconds``. A retry with the same request replays that
response; with a different request it is refused, since replaying an answer to another question
would be wrong. A retry that arrives while the first is still running polls until it finishes:
the database is the only thing the processes share, so polling works across replicas.

Only final answers are stored. A 5xx, a 408 or 429 (both say "try again") or an exception gives
the claim up, so a retry runs the request again; any other 4xx is as final as a 200 and is
replayed. A claim still running after
``abandon_seconds`` belongs to a process that died, and the next request takes it over.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from imagegate.db.base import IdempotencyRecord, IdempotencyRepository
from imagegate.errors import IdempotencyKeyInUse, IdempotencyKeyReused, InvalidRequest
from imagegate.models import Principal

HEADER = "Idempotency-Key"
REPLAYED_HEADER = ("Idempotent-Replayed", "true")
MAX_KEY_LENGTH = 255
RETRY_LATER = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response as sent: what the first request answered and every retry replays."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


Produce = Callable[[], Awaitable[StoredResponse]]


def fingerprint_of(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same" for an idempotency key: method, path and raw body."""
    digest = hashlib.sha256(method.upper().encode("ascii"))
    digest.update(b"\0" + path.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(body)
    return digest.hexdigest()


def check_key(key: str) -> None:
    if not (0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()):
        raise InvalidRequest(
            f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters, "
            "for example a UUID.",
            param=HEADER,
            code="invalid_idempotency_key",
        )


def is_final(status: int) -> bool:
    """Whether a response answers the request for good, so retries get it again. Server errors
    do not, nor do 408 and 429: they ask the client to retry, which a replay would defeat."""
    return status < 500 and status not in RETRY_LATER


class IdempotencyService:
    def __init__(
        self,
        repo: IdempotencyRepository,
        ttl_seconds: float = 86400,
        wait_seconds: float = 120,
        poll_seconds: float = 0.05,
        abandon_seconds: float | None = None,
    ) -> None:
        """``wait_seconds``: how long a retry waits for the first request (best: as long as a
        request may take); ``abandon_seconds`` (default five times that): when a running claim
        is presumed dead."""
        self._repo = repo
        self._ttl = timedelta(seconds=ttl_seconds)
        self._wait_seconds = wait_seconds
        self._poll_seconds = poll_seconds
        self._abandon = timedelta(
            seconds=5 * wait_seconds if abandon_seconds is None else abandon_seconds
        )
        self._cleanups: set[asyncio.Task[None]] = set()

    async def run(
        self, principal: Principal, key: str, request_fingerprint: str, produce: Produce
    ) -> StoredResponse:
        """The response to a request sent with ``key``: produced now if the key is new,
        otherwise the stored one (waiting for it while the first request runs)."""
        check_key(key)
        user_id = principal.user_id
        give_up_at = time.monotonic() + self._wait_seconds
        while True:
            now = datetime.now(UTC)
            held = await self._repo.claim(
                user_id,
                key,
                request_fingerprint,
                claimed_at=now,
                expires_at=now + self._ttl,
                abandoned_before=now - self._abandon,
            )
            if held is None:
                return await self._produce_and_store(user_id, key, now, produce)
            finished = await self._wait_for(user_id, key, request_fingerprint, held, give_up_at)
            if finished is not None:
                return _replayed(finished)
            # The first request failed and gave the key up: this one runs it again.

    async def purge_expired(self) -> int:
        return await self._repo.purge_expired(datetime.now(UTC))

    async def _produce_and_store(
        self, user_id: str, key: str, claimed_at: datetime, produce: Produce
    ) -> StoredResponse:
        try:
            response = await produce()
        except BaseException:
            await self._give_up(user_id, key, claimed_at)
            raise
        if not is_final(response.status):
            await self._give_up(user_id, key, claimed_at)
        else:
            await self._repo.complete(
                user_id, key, claimed_at, response.status, response.headers, response.body
            )
        return response

    async def _wait_for(
        self,
        user_id: str,
        key: str,
        fingerprint: str,
        record: IdempotencyRecord | None,
        give_up_at: float,
    ) -> IdempotencyRecord | None:
        """The finished record, or None once the key is free again."""
        while record is not None:
            if record.request_hash != fingerprint:
                raise IdempotencyKeyReused(
                    f"This {HEADER} was already used with a different request. Send a new key "
                    "for a new request, or the same body to get the first response again.",
                    param=HEADER,
                )
            if record.status is not None:
                return record
            if time.monotonic() >= give_up_at:
                raise IdempotencyKeyInUse(
                    f"The first request with this {HEADER} is still running. Retry later to get "
                    "its response.",
                    param=HEADER,
                    retry_after=1.0,
                )
            await asyncio.sleep(self._poll_seconds)
            record = await self._repo.read(user_id, key, datetime.now(UTC))
        return None

    async def _give_up(self, user_id: str, key: str, claimed_at: datetime) -> None:
        """Free the key so that a retry runs the request again. In a shielded task of its own:
        it must happen even when this request is being cancelled."""
        task = asyncio.ensure_future(self._repo.delete(user_id, key, claimed_at))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        await asyncio.shield(task)


def _replayed(record: IdempotencyRecord) -> StoredResponse:
    assert record.status is not None
    return StoredResponse(record.status, (*record.headers, REPLAYED_HEADER), record.body)
