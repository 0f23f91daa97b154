"""The BlobStore protocol: content-addressed bytes, addressed by key, never by filesystem path."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from imagegate.models import BlobLink, BlobStream, OutputFormat

_MIME_BY_EXTENSION = {f.value: f.mime for f in OutputFormat}
_KEY_PATTERN = re.compile(r"^[0-9a-f]{64}\.(?:png|jpeg|webp)$")


def content_key(data: bytes, output_format: OutputFormat) -> str:
    """The storage key of ``data``: its SHA-256 and its format, so the same bytes are kept once."""
    return f"{hashlib.sha256(data).hexdigest()}.{output_format.value}"


def is_valid_key(key: str) -> bool:
    """Only keys this gateway could have made; anything else (``../``, odd names) is refused."""
    return _KEY_PATTERN.fullmatch(key) is not None


def mime_for_key(key: str) -> str:
    return _MIME_BY_EXTENSION.get(key.rpartition(".")[2], "application/octet-stream")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """One stored blob as a listing sees it: its key, its size, when it was last written (UTC)."""

    key: str
    size: int
    modified: datetime


class BlobStore(Protocol):
    """Bytes by key. Writes are atomic: a reader sees all of a blob or none of it."""

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``; storing the same key twice is a cheap no-op."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or None when there are none."""
        ...

    async def open(self, key: str) -> bytes | BlobStream | BlobLink | None:
        """How ``/files/{key}`` should hand ``key`` out: the bytes, a stream of them, or a
        short-lived link to the store itself; None when there is no such blob."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    def iter_blobs(self) -> AsyncIterator[BlobInfo]:
        """Every blob stored under a key this gateway could have made, in no set order; other
        names (temporary files, foreign objects) are skipped."""
        ...

    def url_for(self, key: str) -> str:
        """The permanent public URL of ``key``; the one place image URLs are made."""
        ...

    async def check(self) -> None:
        """Raise ``Unavailable`` when the store cannot be written (used by /readyz)."""
        ...

    async def aclose(self) -> None:
        """Release connections; the container calls it on shutdown."""
        ...
