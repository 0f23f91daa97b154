"""Domain types shared by every layer.

Plain frozen dataclasses: the API schemas (``api/schemas.py``) and the SQL rows
(``db/tables.py``) are separate shapes that convert to and from these.
"""

from __future__ import annotations

import enum
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256


def new_id() -> str:
    """A random 128-bit id as 32 hex characters (what ``uuid4().hex`` gives, at a third of the
    cost: it is made several times per request)."""
    return os.urandom(16).hex()


class Role(enum.StrEnum):
    ADMIN = "admin"
    USER = "user"


class OutputFormat(enum.StrEnum):
    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"

    @property
    def mime(self) -> str:
        return f"image/{self.value}"


class ResponseFormat(enum.StrEnum):
    URL = "url"
    B64_JSON = "b64_json"


class RequestKind(enum.StrEnum):
    """Text-to-image, or an edit of (or generation from) reference images."""

    GENERATE = "generate"
    EDIT = "edit"


class Outcome(enum.StrEnum):
    """What happened to one generation request."""

    GENERATED = "generated"
    CACHE_HIT = "cache_hit"
    """Served from the cache: no provider call; ``saved_cost_micro_usd`` is what it would cost."""
    COALESCED = "coalesced"
    """Joined an identical request already in flight: one provider call served both."""
    SEMANTIC_HIT = "semantic_hit"
    """Served the images of a near-duplicate prompt (opt-in semantic cache)."""
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Size:
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True, slots=True)
class InputImage:
    """A reference image or mask sent by the caller, already verified and sniffed."""

    data: bytes
    mime: str
    content_hash: str

    @property
    def extension(self) -> str:
        return self.mime.partition("/")[2] or "bin"

    @classmethod
    def from_upload(cls, data: bytes, declared_mime: str | None = None) -> InputImage:
        """As received; the service re-reads the real type from the bytes before use."""
        return cls(data, declared_mime or "application/octet-stream", sha256(data).hexdigest())


@dataclass(frozen=True, slots=True)
class Limits:
    """Spending and image limits of a key or a user; None means unlimited."""

    budget_micro_usd_day: int | None = None
    budget_micro_usd_month: int | None = None
    images_per_minute: int | None = None
    images_per_day: int | None = None

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (
                self.budget_micro_usd_day,
                self.budget_micro_usd_month,
                self.images_per_minute,
                self.images_per_day,
            )
        )


NO_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class RateLimits:
    """A key's own traffic limits; None = the configured default, 0 = unlimited."""

    requests_per_minute: int | None = None
    concurrent_generations: int | None = None


DEFAULT_RATE_LIMITS = RateLimits()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the owner of the API key (or the local CLI user)."""

    user_id: str
    user_name: str
    role: Role
    key_id: str | None = None
    key_limits: Limits = NO_LIMITS
    user_limits: Limits = NO_LIMITS
    rate_limits: RateLimits = DEFAULT_RATE_LIMITS

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A request as a front end received it; ``size`` and ``quality`` are still raw strings.

    ``services.generations`` resolves it against the catalogue into a ``NormalizedRequest``.
    """

    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = None
    quality: str | None = None
    style: str | None = None
    background: str | None = None
    output_format: OutputFormat | None = None
    output_compression: int | None = None
    response_format: ResponseFormat = ResponseFormat.URL
    seed: int | None = None
    user: str | None = None
    negative_prompt: str | None = None
    images: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    strength: float | None = None
    enhance_prompt: bool | None = None
    """Rewrite the prompt with the configured enhancer first; None = the model's default."""


@dataclass(frozen=True, slots=True)
class NormalizedRequest:
    """A request checked against its model's catalogue entry, with every default filled in.

    This is what providers receive and what the cache key is computed from.
    """

    model: str
    prompt: str
    n: int
    size: Size
    quality: str
    output_format: OutputFormat
    output_compression: int | None
    style: str | None
    background: str | None
    seed: int | None
    response_format: ResponseFormat
    kind: RequestKind = RequestKind.GENERATE
    negative_prompt: str | None = None
    images: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    strength: float | None = None
    enhance_prompt: bool = False
    """The prompt goes through the enhancer before the provider (an enhancer is configured and
    the request or its model's default asks for it). ``prompt`` stays the user's own."""


@dataclass(frozen=True, slots=True)
class RawImage:
    """Bytes as a provider returned them, before verification and conversion."""

    data: bytes
    mime: str
    revised_prompt: str | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One upstream call made for a request: where, how it ended, how long it took."""

    target: str
    outcome: str
    """``ok`` or the error code."""
    latency_ms: int
    error: str | None = None
    """The error class, for failed attempts."""


@dataclass(frozen=True, slots=True)
class ProviderResult:
    provider: str
    upstream_model: str
    images: tuple[RawImage, ...]
    cost_micro_usd: int = 0
    usage: dict[str, int] | None = None
    """Token counts for token-priced models (OpenAI's ``usage``), flattened."""


@dataclass(frozen=True, slots=True)
class StoredImage:
    """An image as kept: addressed by its content, with the facts read from its bytes."""

    content_hash: str
    storage_key: str
    mime: str
    width: int
    height: int
    byte_size: int
    revised_prompt: str | None = None
    thumbnail_key: str | None = None
    """The 300x300 WebP thumbnail's own content key (None for images stored before 0007)."""
    placeholder: str | None = None
    """A tiny blurred preview as a ``data:`` URI, shown while the thumbnail loads."""


@dataclass(frozen=True, slots=True)
class ImageQuery:
    """Filters of the image library; every one given must hold (None = not filtered)."""

    model: str | None = None
    provider: str | None = None
    start: datetime | None = None
    """Created at or after (``from``)."""
    end: datetime | None = None
    """Created before (``to``)."""
    tag: str | None = None
    outcome: Outcome | None = None
    q: str | None = None
    """Words that must all appear in the prompt (``word*`` matches a prefix)."""
    user: str | None = None
    """Admins only: a user's name or id; without it an admin sees everyone's images."""


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image of the library: its stored bytes' facts, what made it, and what its owner
    set on it (alt text, tags, pin)."""

    id: str
    generation_id: str
    user_id: str
    position: int
    image: StoredImage
    model: str
    provider: str | None
    outcome: Outcome
    prompt: str
    created_at: datetime
    alt_text: str | None = None
    """Set by the owner; None means the default (a cleaned form of the prompt)."""
    tags: tuple[str, ...] = ()
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class BlobStream:
    """A stored blob being read in chunks, so the gateway passes an image on without holding
    it whole. Whoever takes one must call ``aclose`` when done (exhausted or not): it gives the
    connection back to the store."""

    size: int
    chunks: AsyncIterator[bytes]
    aclose: Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BlobLink:
    """A short-lived URL from which the store itself serves a blob (an S3 presigned URL)."""

    url: str
    expires_seconds: int


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    at: datetime
    data: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Generation:
    """One request's record: what was asked, what happened, what it cost."""

    id: str
    user_id: str
    key_id: str | None
    model: str
    provider: str | None
    upstream_model: str | None
    prompt: str
    n: int
    params: dict[str, object]
    cache_key: str
    outcome: Outcome
    attempts: int
    latency_ms: int
    estimated_cost_micro_usd: int
    cost_micro_usd: int
    created_at: datetime
    completed_at: datetime
    error_code: str | None = None
    error_message: str | None = None
    images: tuple[StoredImage, ...] = ()
    events: tuple[Event, ...] = ()
    attempt_log: tuple[Attempt, ...] = ()
    saved_cost_micro_usd: int = 0
    source_generation_id: str | None = None
    """For cache hits and coalesced requests: the generation whose images were reused."""
    enhanced_prompt: str | None = None
    """The enhancer's rewrite of ``prompt`` that the provider was given (None: the original)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's record; the secret itself is never kept, only its hash."""

    id: str
    user_id: str
    user_name: str
    role: Role
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    limits: Limits = NO_LIMITS
    user_limits: Limits = NO_LIMITS
    rate_limits: RateLimits = DEFAULT_RATE_LIMITS
    expires_at: datetime | None = None
    """When the key stops working (timezone-aware UTC); None = never."""
    last_used_at: datetime | None = None
    """When it last authenticated, to within a minute; None = never used."""

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as the admin pages list them: role, shared limits and how many keys are active."""

    id: str
    name: str
    role: Role
    created_at: datetime
    limits: Limits = NO_LIMITS
    active_keys: int = 0
    enhance_prompt: bool | None = None
    """The user's own prompt-enhancement choice (a bot's toggle); None = each model's
    default."""


@dataclass(frozen=True, slots=True)
class CachedResult:
    """A finished generation whose images can answer an identical request."""

    generation_id: str
    images: tuple[StoredImage, ...]
    cost_micro_usd: int
    """What the source generation cost: what reusing it saves."""
    expires_at: datetime | None = None
    """When the entry stops being reused (timezone-aware UTC); None = never."""


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """Where a cache entry is written: with its generation, in the same transaction."""

    scope: str
    cache_key: str
    expires_at: datetime | None


class ClaimOutcome(enum.StrEnum):
    CLAIMED = "claimed"
    """This request generates; the others wait for it."""
    HELD = "held"
    """Another request (perhaps in another process) is generating it."""
    CACHED = "cached"
    """It was generated in the meantime: the cache has it."""


@dataclass(frozen=True, slots=True)
class FlightClaim:
    """A held claim on a request key; released with the generation that answers it."""

    scope: str
    cache_key: str
    owner: str


@dataclass(frozen=True, slots=True)
class FlightState:
    """The cross-process claim on an identical request in flight."""

    owner: str
    expires_at: datetime
    failed_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetCounter:
    """One limited window of one subject (``key:<id>`` or ``user:<id>``)."""

    subject: str
    window: str
    """``minute``, ``day`` or ``month``."""
    window_start: datetime
    resets_at: datetime
    micro_usd_limit: int | None
    images_limit: int | None


@dataclass(frozen=True, slots=True)
class BudgetSettlement:
    """A reservation replaced by what was really spent and made (0 and 0: released).

    Written in the same transaction as the generation it pays for, so that a crash can never
    leave a recorded generation unpaid (or a payment without its generation)."""

    reservation_id: str
    counters: tuple[BudgetCounter, ...]
    reserved_micro_usd: int
    reserved_images: int
    spent_micro_usd: int
    made_images: int


class JobStatus(enum.StrEnum):
    """A job's whole state machine: queued -> running -> succeeded | failed | canceled.

    A running job whose worker died goes back to running under another worker when its lease
    expires (``attempts`` grows); one that fails retryably goes back to queued until its
    attempts are used up.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job failed, in the OpenAI error shape's terms."""

    code: str
    message: str
    type: str = "server_error"
    param: str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """An asynchronous generation: a ``GenerationRequest`` waiting in, or done with, the queue."""

    id: str
    user_id: str
    key_id: str | None
    model: str
    request: GenerationRequest
    cache_mode: str
    status: JobStatus
    created_at: datetime
    priority: int = 0
    attempts: int = 0
    max_attempts: int = 3
    started_at: datetime | None = None
    finished_at: datetime | None = None
    generation_id: str | None = None
    error: JobError | None = None
    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = ()
    metadata: dict[str, object] | None = None
    batch_id: str | None = None
    cancel_requested: bool = False
    stage: str | None = None
    """While running: ``generating``, or ``waiting`` while its API key already runs as many
    generations as it may."""
    lease_owner: str | None = None


@dataclass(frozen=True, slots=True)
class JobLink:
    """Finishes a job in the same transaction as the generation that answers it, if the
    worker ``owner`` still holds the job's lease and nobody canceled it."""

    job_id: str
    owner: str


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    user_id: str
    key_id: str | None
    created_at: datetime
    concurrency: int
    job_ids: tuple[str, ...] = ()
    metadata: dict[str, object] | None = None


def job_id_at(stamp_us: int, prefix: str = "job") -> str:
    """``job_`` + a creation time in microseconds (hex) + randomness: ids made from increasing
    stamps sort in creation order, which is the queue's FIFO order and the list's keyset order.
    """
    return f"{prefix}_{stamp_us:014x}{os.urandom(5).hex()}"
