"""The image library (records: browse, search, describe, tag, pin, delete) and the stored
files behind its permanent URLs."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from imagegate.db.base import GenerationRepository, ImageChanges, ImageRepository
from imagegate.errors import InvalidRequest, NotFound, Unavailable
from imagegate.models import (
    BlobLink,
    BlobStream,
    Generation,
    ImageQuery,
    ImageRecord,
    Principal,
)
from imagegate.services.thumbnails import Thumbnails
from imagegate.services.usage import as_utc
from imagegate.storage.base import BlobStore, is_valid_key, mime_for_key

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class ImageFile:
    """What ``GET /files/{key}`` hands out: the bytes, a stream of them, or a short-lived link
    to the store (as the storage backend is configured)."""

    mime: str
    etag: str
    """The content hash, quoted: a key's bytes never change, so neither does its ETag."""
    body: bytes | BlobStream | BlobLink


class ImageFileService:
    def __init__(self, blobs: BlobStore, thumbnails: Thumbnails) -> None:
        self._blobs = blobs
        self._thumbnails = thumbnails

    async def read(self, key: str) -> tuple[bytes, str]:
        """The bytes and MIME type of ``key``; NotFound for unknown or malformed keys."""
        data = await self._blobs.get(key) if is_valid_key(key) else None
        if data is None:
            raise NotFound(f"No file {key!r}.")
        return data, mime_for_key(key)

    async def open(self, key: str) -> ImageFile:
        """``key`` as the file route serves it; NotFound for unknown or malformed keys."""
        if not is_valid_key(key):
            raise NotFound(f"No file {key!r}.")
        body = await self._blobs.open(key)
        if body is None and key.endswith(".webp") and await self._thumbnails.ensure(key):
            body = await self._blobs.open(key)  # a thumbnail not made yet (or lost): made now
        if body is None:
            raise NotFound(f"No file {key!r}.")
        return ImageFile(mime_for_key(key), f'"{key.partition(".")[0]}"', body)


MAX_PAGE = 200
MAX_TAGS = 20
MAX_TAG_LENGTH = 50
MAX_ALT_TEXT = 1000
ALT_TEXT_LENGTH = 125
"""Default alt text is cut (at a word) to this many characters: what screen readers are
commonly advised to read in one go."""

_MJ_FLAG = re.compile(r"(?:^|\s)--[a-z]+(?:\s+[^\s,-][^\s,]*)?", re.IGNORECASE)
_WEIGHTED = re.compile(r"[(\[{<]+([^()\[\]{}<>]*?)(?::\s*-?[\d.]+)?[)\]}>]+")
_BOILERPLATE = frozenset(
    {
        "4k", "8k", "16k", "hd", "uhd", "hdr", "masterpiece", "best quality", "high quality",
        "highest quality", "ultra quality", "highly detailed", "ultra detailed", "intricate",
        "intricate details", "trending on artstation", "artstation", "octane render",
        "unreal engine", "unreal engine 5", "award winning", "award-winning", "sharp focus",
        "high resolution", "hi-res", "hires",
    }
)  # fmt: skip
_TAG = re.compile(r"^[\w][\w .:/+#-]*$")


def default_alt_text(prompt: str) -> str:
    """A prompt as alt text: without Midjourney-style ``--flags``, weight syntax like
    ``(word:1.2)`` and quality boilerplate (``8k, masterpiece``), whitespace collapsed, first
    letter capitalised, cut at a word to about ``ALT_TEXT_LENGTH`` characters."""
    text = _MJ_FLAG.sub(" ", prompt)
    text = _WEIGHTED.sub(lambda m: m.group(1), text)
    parts = [" ".join(part.split()) for part in text.split(",")]
    kept = [p for p in parts if p and p.lower().strip(" .!") not in _BOILERPLATE]
    text = ", ".join(kept).strip(" ,;")
    if len(text) > ALT_TEXT_LENGTH:
        cut = text[: ALT_TEXT_LENGTH + 1].rsplit(" ", 1)[0].rstrip(" ,;:")
        text = (cut or text[:ALT_TEXT_LENGTH]) + "…"
    return text[:1].upper() + text[1:] if text else "Generated image"


def clean_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Tags as stored: trimmed, lower-cased, inner whitespace collapsed, duplicates dropped."""
    cleaned: dict[str, None] = {}
    for raw in tags:
        tag = " ".join(raw.split()).lower()
        if not tag or len(tag) > MAX_TAG_LENGTH or not _TAG.match(tag):
            raise InvalidRequest(
                f"Tag {raw!r} must be 1 to {MAX_TAG_LENGTH} characters: letters, digits, "
                "spaces and . : / + # - (starting with a letter or digit).",
                param="tags",
            )
        cleaned[tag] = None
    if len(cleaned) > MAX_TAGS:
        raise InvalidRequest(f"An image may have at most {MAX_TAGS} tags.", param="tags")
    return tuple(cleaned)


def encode_cursor(record: ImageRecord) -> str:
    """The position after ``record`` in newest-first order, opaque to clients."""
    stamp = (record.created_at - _EPOCH) // _MICROSECOND
    return base64.urlsafe_b64encode(f"{stamp}:{record.id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, image_id = raw.partition(":")
        if not image_id or len(image_id) > 40:
            raise ValueError(raw)
        return _EPOCH + int(stamp) * _MICROSECOND, image_id
    except (ValueError, UnicodeDecodeError, OverflowError):
        raise InvalidRequest(
            "'cursor' is not one this API returned; pass next_cursor as it came.",
            param="cursor",
        ) from None


@dataclass(frozen=True, slots=True)
class ImageView:
    """An image as front ends show it: its record, where to fetch it, what to say about it."""

    record: ImageRecord
    url: str
    thumbnail_url: str | None
    alt_text: str
    """The owner's alt text, else the default made from the prompt."""
    generation: Generation | None = None
    """The request that made it (cost, latency, parameters); on single-image reads only."""


@dataclass(frozen=True, slots=True)
class ImagePage:
    images: tuple[ImageView, ...]
    """Newest first."""
    next_cursor: str | None
    """Pass as ``cursor`` for the next (older) page; None on the last page."""


@dataclass(frozen=True, slots=True)
class GenerationView:
    generation: Generation
    images: tuple[ImageView, ...]
    """Its images still in the library (a deleted one is no longer listed)."""


class ImageLibrary:
    """The caller's images: browse, search, describe, tag, pin, delete.

    Everything is scoped to the caller; an admin may read and change anyone's (and list one
    user's with ``query.user``). Someone else's image or generation is NotFound, exactly like
    one that does not exist, so an answer never confirms what others have.
    """

    def __init__(
        self,
        records: ImageRepository,
        generations: GenerationRepository,
        blobs: BlobStore,
        *,
        forget_cached: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self._records = records
        self._generations = generations
        self._blobs = blobs
        self._forget_cached = forget_cached

    async def list(
        self, principal: Principal, query: ImageQuery, cursor: str | None, limit: int
    ) -> ImagePage:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"'limit' must be 1 to {MAX_PAGE}.", param="limit")
        start = as_utc(query.start) if query.start is not None else None
        end = as_utc(query.end) if query.end is not None else None
        if start is not None and end is not None and start > end:
            raise InvalidRequest("'from' is after 'to'.", param="from")
        tag = None
        if query.tag is not None:
            (tag,) = clean_tags([query.tag])
        q = query.q.strip() if query.q is not None else None
        query = replace(query, start=start, end=end, tag=tag, q=q or None)
        found = await self._records.page(
            user_id=await self._owner_scope(principal, query.user),
            query=query,
            before=None if cursor is None else decode_cursor(cursor),
            limit=limit + 1,  # one more than shown tells whether another page exists
        )
        shown = found[:limit]
        return ImagePage(
            images=tuple(self._view(record) for record in shown),
            next_cursor=encode_cursor(shown[-1]) if len(found) > limit else None,
        )

    async def get(self, principal: Principal, image_id: str) -> ImageView:
        record = await self._owned(principal, image_id)
        return self._view(record, await self._generations.get(record.generation_id))

    async def update(
        self,
        principal: Principal,
        image_id: str,
        *,
        alt_text: str | None = None,
        tags: Sequence[str] | None = None,
        pinned: bool | None = None,
    ) -> ImageView:
        """Change what is given; ``alt_text=""`` goes back to the default alt text."""
        changes = ImageChanges(
            alt_text=_cleaned_alt_text(alt_text),
            reset_alt_text=alt_text is not None and not alt_text.strip(),
            tags=None if tags is None else clean_tags(tags),
            pinned=pinned,
        )
        await self._owned(principal, image_id)
        record = await self._records.update(image_id, changes)
        if record is None:  # deleted meanwhile
            raise NotFound(f"No image {image_id!r}.", param="id")
        return self._view(record, await self._generations.get(record.generation_id))

    async def delete(self, principal: Principal, image_id: str) -> None:
        """The record goes at once; its bytes and thumbnail go too unless another record
        still refers to them (the same picture reached by a cache hit, say)."""
        await self._owned(principal, image_id)
        removal = await self._records.delete(image_id)
        if removal is None:
            raise NotFound(f"No image {image_id!r}.", param="id")
        if self._forget_cached is not None:
            for scope, cache_key in removal.cache_entries:
                await self._forget_cached(scope, cache_key)
        for key in removal.unreferenced_keys:
            try:
                await self._blobs.delete(key)
            except Unavailable as exc:  # the record is gone; cleanup takes the orphan later
                log.warning("could not delete blob %s of image %s: %r", key, image_id, exc)

    async def generation(self, principal: Principal, generation_id: str) -> GenerationView:
        generation = await self._generations.get(generation_id)
        if generation is None or not _may_see(principal, generation.user_id):
            raise NotFound(f"No generation {generation_id!r}.", param="id")
        records = await self._records.of_generation(generation_id)
        return GenerationView(generation, tuple(self._view(r) for r in records))

    async def _owned(self, principal: Principal, image_id: str) -> ImageRecord:
        record = await self._records.get(image_id)
        if record is None or not _may_see(principal, record.user_id):
            raise NotFound(f"No image {image_id!r}.", param="id")
        return record

    async def _owner_scope(self, principal: Principal, user: str | None) -> str | None:
        """Whose images a list shows: the caller's; an admin's, everyone's (None) or one
        user's."""
        if user is None:
            return None if principal.is_admin else principal.user_id
        if not principal.is_admin:
            if user in (principal.user_id, principal.user_name):
                return principal.user_id
            raise NotFound(f"No user {user!r}.", param="user")
        found = await self._records.find_user(user)
        if found is None:
            raise NotFound(f"No user {user!r}.", param="user")
        return found

    def _view(self, record: ImageRecord, generation: Generation | None = None) -> ImageView:
        thumbnail = record.image.thumbnail_key
        return ImageView(
            record=record,
            url=self._blobs.url_for(record.image.storage_key),
            thumbnail_url=None if thumbnail is None else self._blobs.url_for(thumbnail),
            alt_text=record.alt_text or default_alt_text(record.prompt),
            generation=generation,
        )


def _may_see(principal: Principal, owner_id: str) -> bool:
    return principal.is_admin or owner_id == principal.user_id


def _cleaned_alt_text(alt_text: str | None) -> str | None:
    if alt_text is None or not alt_text.strip():
        return None
    text = " ".join(alt_text.split())
    if len(text) > MAX_ALT_TEXT:
        raise InvalidRequest(
            f"'alt_text' may be at most {MAX_ALT_TEXT} characters.", param="alt_text"
        )
    return text
