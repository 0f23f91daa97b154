"""Local-disk BlobStore: ``root/ab/cd/<sha256>.<ext>``, written by temp file + rename.

A crash mid-write leaves at most a ``.tmp-*`` file, never a half image under a real name.
Blocking file I/O runs in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

from imagegate.errors import StorageError, StorageFull, Unavailable
from imagegate.storage.base import BlobInfo, is_valid_key

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class LocalBlobStore:
    def __init__(self, root: Path, public_base_url: str) -> None:
        self._root = root.resolve()
        self._root.mkdir(parents=True, exist_ok=True)
        self._files_url = f"{public_base_url.rstrip('/')}/files/"

    def url_for(self, key: str) -> str:
        return self._files_url + key

    def _path(self, key: str) -> Path:
        if not is_valid_key(key):
            raise ValueError(f"not a storage key: {key!r}")
        return self._root / key[:2] / key[2:4] / key

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def put(self, key: str, data: bytes) -> None:
        # One stat on the loop is cheaper than a thread hop; content-addressed, so a key that
        # exists already holds these bytes.
        if os.path.exists(self._path(key)):  # noqa: ASYNC240
            return
        try:
            await asyncio.to_thread(self._write, key, data)
        except OSError as exc:
            error = StorageFull if exc.errno in _FULL else StorageError
            raise error(f"could not store image: {exc.strerror or exc}") from exc

    def _read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    async def get(self, key: str) -> bytes | None:
        if not is_valid_key(key):
            return None
        return await asyncio.to_thread(self._read, key)

    async def open(self, key: str) -> bytes | None:
        # Images are small enough that one read beats streaming them from a thread.
        return await self.get(key)

    async def exists(self, key: str) -> bool:
        return is_valid_key(key) and await asyncio.to_thread(self._path(key).exists)

    async def delete(self, key: str) -> None:
        if is_valid_key(key):
            await asyncio.to_thread(self._path(key).unlink, True)

    def _walk(self) -> Iterator[BlobInfo]:
        for path in self._root.glob("??/??/*"):
            # Only where ``_path`` puts it: a stray copy elsewhere is not this key's blob.
            if not is_valid_key(path.name) or path != self._path(path.name):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # deleted while listing
            modified = datetime.fromtimestamp(stat.st_mtime, UTC)
            yield BlobInfo(key=path.name, size=stat.st_size, modified=modified)

    async def iter_blobs(self) -> AsyncIterator[BlobInfo]:
        found = await asyncio.to_thread(lambda: list(self._walk()))
        for info in found:
            yield info

    async def check(self) -> None:
        if not os.access(self._root, os.W_OK):
            raise Unavailable(f"storage folder {self._root} is not writable")

    async def aclose(self) -> None:
        """Nothing to release: every file is closed when its read or write ends."""
