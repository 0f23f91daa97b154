"""Reading stored image files by their permanent key."""

from __future__ import annotations

from dataclasses import dataclass

from imagegate.errors import NotFound
from imagegate.models import BlobLink, BlobStream
from imagegate.storage.base import BlobStore, is_valid_key, mime_for_key


@dataclass(frozen=True, slots=True)
class ImageFile:
    """What ``GET /files/{key}`` hands out: the bytes, a stream of them, or a short-lived link
    to the store (as the storage backend is configured)."""

    mime: str
    etag: str
    """The content hash, quoted: a key's bytes never change, so neither does its ETag."""
    body: bytes | BlobStream | BlobLink


class ImageFileService:
    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    async def read(self, key: str) -> tuple[bytes, str]:
        """The bytes and MIME type of ``key``; NotFound for unknown or malformed keys."""
        data = await self._blobs.get(key) if is_valid_key(key) else None
        if data is None:
            raise NotFound(f"No file {key!r}.")
        return data, mime_for_key(key)

    async def open(self, key: str) -> ImageFile:
        """``key`` as the file route serves it; NotFound for unknown or malformed keys."""
        body = await self._blobs.open(key) if is_valid_key(key) else None
        if body is None:
            raise NotFound(f"No file {key!r}.")
        return ImageFile(mime_for_key(key), f'"{key.partition(".")[0]}"', body)
