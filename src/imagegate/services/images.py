"""Reading stored image files by their permanent key."""

from __future__ import annotations

from imagegate.errors import NotFound
from imagegate.storage.base import BlobStore, is_valid_key, mime_for_key


class ImageFileService:
    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    async def read(self, key: str) -> tuple[bytes, str]:
        """The bytes and MIME type of ``key``; NotFound for unknown or malformed keys."""
        data = await self._blobs.get(key) if is_valid_key(key) else None
        if data is None:
            raise NotFound(f"No file {key!r}.")
        return data, mime_for_key(key)
