"""What the services need from the database, as protocols: services never import SQLAlchemy."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from imagegate.models import (
    NO_LIMITS,
    ApiKey,
    BudgetCounter,
    BudgetSettlement,
    CachedResult,
    CacheEntry,
    ClaimOutcome,
    FlightClaim,
    FlightState,
    Generation,
    ImageQuery,
    ImageRecord,
    JobLink,
    Limits,
    RateLimits,
    Role,
    UserRecord,
)


class Database(Protocol):
    async def ping(self) -> None:
        """Raise ``Unavailable`` when the database cannot answer."""
        ...


class KeyRepository(Protocol):
    async def ensure_user(
        self, name: str, role: Role, limits: Limits = NO_LIMITS
    ) -> tuple[str, Role]:
        """The id and role of the user called ``name``, created with ``role`` and ``limits``
        if new (an existing user's limits are left as they are)."""
        ...

    async def find_by_name(self, user_name: str, key_name: str) -> ApiKey | None:
        """The newest key called ``key_name`` of the user called ``user_name``, revoked or
        not."""
        ...

    async def insert_key(self, key: ApiKey, key_hash: str, webhook_secret: str) -> None: ...

    async def find_active_by_id(self, key_id: str) -> ApiKey | None: ...

    async def find_active_by_hash(self, key_hash: str) -> tuple[ApiKey, str] | None:
        """The unrevoked key with this hash, and the hash as stored."""
        ...

    async def list_keys(self, include_revoked: bool) -> list[ApiKey]: ...

    async def revoke(self, prefix: str) -> list[ApiKey]:
        """Revoke every active key whose prefix is ``prefix``; return what was revoked."""
        ...

    async def count_active_admin_keys(self) -> int: ...

    async def set_key_limits(
        self, prefix: str, limits: Limits, rate_limits: RateLimits
    ) -> list[ApiKey]:
        """Replace the limits (budgets, quotas and traffic limits) of the active keys with
        ``prefix``; return them."""
        ...

    async def set_user_limits(self, user_name: str, limits: Limits) -> bool:
        """Replace a user's limits; False if there is no such user."""
        ...

    async def set_user_enhance_prompt(self, user_name: str, enhance: bool | None) -> bool:
        """Set a user's prompt-enhancement choice (None: each model's default); False if
        there is no such user."""
        ...

    async def set_key_expiry(self, prefix: str, expires_at: datetime | None) -> list[ApiKey]:
        """Set (None: clear) the expiry of the active keys with ``prefix``; return them."""
        ...

    async def record_last_used(self, used: dict[str, datetime]) -> None:
        """Write ``last_used_at`` for each key id, in one statement."""
        ...

    async def list_users(self, limit: int) -> list[UserRecord]:
        """Up to ``limit`` users by name, each with its count of active (unrevoked) keys."""
        ...

    async def find_user(
        self, *, user_id: str | None = None, name: str | None = None
    ) -> UserRecord | None:
        """The user with this id (or else this name), or None."""
        ...


class GenerationRepository(Protocol):
    async def record(
        self,
        generation: Generation,
        cache_entry: CacheEntry | None = None,
        flight: FlightClaim | None = None,
        job: JobLink | None = None,
        settlement: BudgetSettlement | None = None,
    ) -> None:
        """Write the generation, its images and its events in one transaction, with the cache
        entry pointing at it (replacing any older one), the end of its in-flight claim, the
        ``settlement`` of its budget reservation, and the success of the ``job`` it answers
        (``JobSuperseded``, and nothing written, if that job is no longer the worker's)."""
        ...

    async def get(self, generation_id: str) -> Generation | None: ...


@dataclass(frozen=True, slots=True)
class ImageChanges:
    """What an owner changes on an image; None leaves a field as it is."""

    alt_text: str | None = None
    reset_alt_text: bool = False
    """Back to the default alt text (the cleaned prompt)."""
    tags: tuple[str, ...] | None = None
    """The whole new list (already cleaned), replacing the old one."""
    pinned: bool | None = None


@dataclass(frozen=True, slots=True)
class ImageRemoval:
    """What deleting an image record left behind for the caller to clean up."""

    record: ImageRecord
    unreferenced_keys: tuple[str, ...]
    """Blobs (image, thumbnail) that no remaining record refers to: safe to delete."""
    cache_entries: tuple[tuple[str, str], ...]
    """``(scope, cache_key)`` of the cache entries that served this image, now removed."""


class ImageRepository(Protocol):
    """The image library's records."""

    async def find_user(self, name_or_id: str) -> str | None:
        """The id of the user with this id, else of the user with this name."""
        ...

    async def page(
        self,
        *,
        user_id: str | None,
        query: ImageQuery,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[ImageRecord]:
        """Up to ``limit`` images of ``user_id`` (everyone's when None) matching every filter
        of ``query`` (``query.user`` aside: the caller resolved it), newest first (created
        at, then id, descending), strictly after the ``before`` position. ``query.q`` is a
        full-text search of the prompts, by each database's own index;
        ``InvalidRequest`` when it has no word to search for."""
        ...

    async def get(self, image_id: str) -> ImageRecord | None: ...

    async def of_generation(self, generation_id: str) -> list[ImageRecord]:
        """The images of one generation, in their order."""
        ...

    async def update(self, image_id: str, changes: ImageChanges) -> ImageRecord | None:
        """Apply ``changes`` in one transaction; the record after, or None if there is none."""
        ...

    async def delete(self, image_id: str) -> ImageRemoval | None:
        """Delete the record, its tags and the cache entries of its generation in one
        transaction; None if there was no such record."""
        ...

    async def thumbnail_source(self, thumbnail_key: str) -> str | None:
        """The storage key of an image whose thumbnail is ``thumbnail_key``, if any."""
        ...

    async def set_placeholder(self, thumbnail_key: str, placeholder: str) -> None:
        """Give every record of ``thumbnail_key`` that has none its blur-up placeholder."""
        ...


class CacheRepository(Protocol):
    async def lookup(self, scope: str, cache_key: str, now: datetime) -> CachedResult | None:
        """The unexpired entry for the key, with its images; None when there is none."""
        ...


class FlightRepository(Protocol):
    """Cross-process single-flight: one row per request key being generated somewhere."""

    async def claim(
        self,
        scope: str,
        cache_key: str,
        owner: str,
        expires_at: datetime,
        since: datetime | None,
    ) -> ClaimOutcome:
        """Become the one generating ``cache_key`` (CLAIMED) if the cache does not have it
        (CACHED) and no live claim exists, or the existing one expired or failed before
        ``since``; HELD if someone else holds it. One transaction. ``since`` None: a refresh,
        which ignores the cache (and takes over failed claims)."""
        ...

    async def extend(
        self, scope: str, cache_key: str, owner: str, expires_at: datetime
    ) -> None: ...

    async def fail(self, scope: str, cache_key: str, owner: str, code: str, message: str) -> None:
        """Tell the waiters the call failed (they raise it; nothing is cached)."""
        ...

    async def release(self, scope: str, cache_key: str, owner: str) -> None: ...

    async def state(self, scope: str, cache_key: str) -> FlightState | None: ...


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """One ``Idempotency-Key`` of one user: running until ``status`` is set, then the response.

    ``claimed_at`` is also the claim's identity: completing or deleting names it, so a claimant
    whose claim was taken over (it expired, or its process was presumed dead) changes nothing.
    """

    request_hash: str
    claimed_at: datetime
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


class IdempotencyRepository(Protocol):
    async def claim(
        self,
        user_id: str,
        key: str,
        request_hash: str,
        claimed_at: datetime,
        expires_at: datetime,
        abandoned_before: datetime,
    ) -> IdempotencyRecord | None:
        """Atomically insert a running claim: None when this call claimed the key, else the
        record that holds it. A record that expired by ``claimed_at``, or is still running
        though claimed before ``abandoned_before``, counts as absent and is replaced."""
        ...

    async def complete(
        self,
        user_id: str,
        key: str,
        claimed_at: datetime,
        status: int,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
    ) -> None:
        """Store the response of the claim made at ``claimed_at`` (if it still holds the key)."""
        ...

    async def read(self, user_id: str, key: str, now: datetime) -> IdempotencyRecord | None:
        """The record of the key, unless there is none or it expired by ``now``."""
        ...

    async def delete(self, user_id: str, key: str, claimed_at: datetime) -> None:
        """Give up the claim made at ``claimed_at`` so that a retry runs the request again."""
        ...

    async def purge_expired(self, now: datetime) -> int:
        """Delete every record that expired before ``now``; return how many."""
        ...


class UsageGrouping(enum.StrEnum):
    """How a usage report splits its totals."""

    DAY = "day"
    """The UTC calendar day a request was made, as ``YYYY-MM-DD``."""
    MODEL = "model"
    PROVIDER = "provider"
    KEY = "key"
    """The API key used (its display prefix and name; never its hash)."""


@dataclass(frozen=True, slots=True)
class UsageTally:
    """Sums over a set of generation rows. Money is integer micro-USD, so sums are exact."""

    key: str | None = None
    """The group: a UTC day, a model, a provider or an API key's display prefix. None for the
    totals, and for requests made without a provider or without a key (the local CLI)."""
    key_name: str | None = None
    """The API key's name, when grouped by key."""
    requests: int = 0
    images: int = 0
    """Images delivered: ``n`` of the generated, cache_hit, semantic_hit and coalesced ones."""
    generated: int = 0
    cache_hit: int = 0
    semantic_hit: int = 0
    coalesced: int = 0
    failed: int = 0
    spend_micro_usd: int = 0
    saved_micro_usd: int = 0
    """What the cache hits and coalesced requests would have cost."""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One telemetry event (``generation_started``, ``generation_completed``, ...) as stored."""

    id: int
    generation_id: str | None
    type: str
    data: dict[str, object]
    created_at: datetime


class UsageRepository(Protocol):
    """Reads behind usage reports and the telemetry view; nothing here writes."""

    async def find_user(self, name_or_id: str) -> tuple[str, str] | None:
        """``(id, name)`` of the user with this id, else of the user with this name."""
        ...

    async def tally(
        self,
        *,
        user_id: str | None,
        start: datetime,
        end: datetime,
        group_by: UsageGrouping | None,
    ) -> list[UsageTally]:
        """Sums over the generations created in ``[start, end)`` by ``user_id`` (everyone's
        when None), in one query: one tally when ``group_by`` is None, else one per group with
        rows, ordered by key (None last)."""
        ...

    async def events(
        self,
        *,
        event_type: str | None,
        generation_id: str | None,
        start: datetime | None,
        end: datetime | None,
        before_id: int | None,
        limit: int,
    ) -> list[EventRecord]:
        """Up to ``limit`` events matching every filter given, newest (highest id) first, with
        ids below ``before_id`` (keyset pagination: stable while new events arrive)."""
        ...


class BudgetRepository(Protocol):
    async def levels(self, counters: Sequence[BudgetCounter]) -> list[tuple[int, int, int]]:
        """``(spent micro-USD, reserved micro-USD, images)`` of each counter."""
        ...

    async def reserve(
        self,
        reservation_id: str,
        counters: Sequence[BudgetCounter],
        micro_usd: int,
        images: int,
        expires_at: datetime,
    ) -> None:
        """Reserve on every counter atomically, or raise ``BudgetExceeded``/``QuotaExceeded``
        having changed nothing. The hold is given back by ``release_expired`` if it is still
        there after ``expires_at``."""
        ...

    async def release_expired(self, now: datetime) -> int:
        """Give back the holds of requests whose process died; how many."""
        ...

    async def settle(self, settlement: BudgetSettlement) -> None:
        """Replace a reservation by what was spent and made (0 and 0 to release it)."""
        ...


@dataclass(frozen=True, slots=True)
class BlobUse:
    """One image record and the blobs it refers to, as cleanup sees it."""

    image_id: str
    storage_key: str
    thumbnail_key: str | None
    created_at: datetime
    pinned: bool


class MaintenanceRepository(Protocol):
    """What cleanup reads and removes; deleting images goes through ``ImageRepository``."""

    async def blob_uses(self) -> list[BlobUse]: ...

    async def is_referenced(self, key: str) -> bool:
        """Whether any image record uses ``key`` (as its image or its thumbnail) now."""
        ...

    async def expired_cache_entries(self, now: datetime) -> list[tuple[str, str]]:
        """``(scope, cache_key)`` of the entries that expired by ``now``."""
        ...

    async def delete_expired_cache_entries(self, now: datetime) -> list[tuple[str, str]]:
        """Delete the entries that expired by ``now``; the ones deleted."""
        ...
