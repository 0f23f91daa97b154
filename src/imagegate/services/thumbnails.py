"""Thumbnails and blur-up placeholders, made off the request path.

A generation's record is committed with its thumbnail's key (``thumbnail_key_for``) before the
thumbnail exists: decoding a large image costs milliseconds of CPU that no request should wait
for. ``submit`` queues the work for one background task after the commit. A full queue drops
work rather than grow (a burst never costs memory), because a missing thumbnail is made again
whenever it is needed: by ``ensure`` when its URL is first fetched, and by ``imagegate cleanup``.
The same thumbnail is only ever made by one task at a time in a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Protocol

from cachetools import LRUCache

from imagegate.errors import ImagegateError
from imagegate.models import StoredImage
from imagegate.storage.base import BlobStore
from imagegate.storage.images import make_thumbnail

log = logging.getLogger(__name__)

QUEUE_SIZE = 1024
"""Pending thumbnails (storage keys only, not bytes) before new ones are left to ``ensure``."""

RECENT = 4096
"""Placeholders of thumbnails made lately: a repeat of the same picture (a cache hit, a
provider answering the same bytes) gets its placeholder without another decode."""


class ThumbnailRecords(Protocol):
    async def thumbnail_source(self, thumbnail_key: str) -> str | None: ...

    async def set_placeholder(self, thumbnail_key: str, placeholder: str) -> None: ...


class Thumbnails:
    def __init__(self, blobs: BlobStore, records: ThumbnailRecords, max_pixels: int) -> None:
        self._blobs = blobs
        self._records = records
        self._max_pixels = max_pixels
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_SIZE)
        self._recent: LRUCache[str, str] = LRUCache(RECENT)
        self._making: dict[str, asyncio.Task[int | None]] = {}
        self._worker: asyncio.Task[None] | None = None
        self.dropped = 0
        """Thumbnails left to ``ensure`` because the queue was full."""

    def submit(self, images: Iterable[StoredImage]) -> None:
        """Make the thumbnails of ``images`` (already recorded) soon, in the background."""
        for image in images:
            key = image.thumbnail_key
            if key is None or key in self._recent:
                continue
            try:
                self._queue.put_nowait((image.storage_key, key))
            except asyncio.QueueFull:
                self.dropped += 1
                continue
            if self._worker is None or self._worker.done():
                self._worker = asyncio.create_task(self._work(), name="thumbnails")

    def completed(self, image: StoredImage) -> StoredImage:
        """``image`` with its placeholder, if this process made its thumbnail lately."""
        if image.placeholder is not None or image.thumbnail_key is None:
            return image
        placeholder = self._recent.get(image.thumbnail_key)
        return image if placeholder is None else replace(image, placeholder=placeholder)

    async def ensure(self, thumbnail_key: str) -> bool:
        """Make ``thumbnail_key`` now if a record names it and its image is stored; whether it
        was made."""
        storage_key = await self._records.thumbnail_source(thumbnail_key)
        return storage_key is not None and await self._make(storage_key, thumbnail_key) is not None

    async def remake(self, storage_key: str, thumbnail_key: str) -> int | None:
        """Make ``thumbnail_key`` again from the image ``storage_key`` (cleanup's repair of a
        missing thumbnail); the bytes stored, or None if the image is gone, does not decode or
        the store refused the thumbnail."""
        return await self._make(storage_key, thumbnail_key)

    async def idle(self) -> None:
        """Return once every submitted thumbnail is made (or given up)."""
        await self._queue.join()

    async def aclose(self, drain_seconds: float = 5.0) -> None:
        """Finish what is queued for up to ``drain_seconds``, then stop; what is left is made on
        demand later."""
        if self._worker is not None and not self._worker.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle(), drain_seconds)
        tasks = [t for t in (self._worker, *self._making.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            storage_key, thumbnail_key = await self._queue.get()
            try:
                if thumbnail_key not in self._recent and not await self._blobs.exists(
                    thumbnail_key
                ):
                    await self._make(storage_key, thumbnail_key)
            except Exception:  # one bad image must not stop the others
                log.exception("thumbnail %s of %s failed", thumbnail_key, storage_key)
            finally:
                self._queue.task_done()

    async def _make(self, storage_key: str, thumbnail_key: str) -> int | None:
        running = self._making.get(thumbnail_key)
        if running is None:
            running = asyncio.create_task(self._make_once(storage_key, thumbnail_key))
            self._making[thumbnail_key] = running
            running.add_done_callback(lambda _: self._making.pop(thumbnail_key, None))
        return await asyncio.shield(running)

    async def _make_once(self, storage_key: str, thumbnail_key: str) -> int | None:
        data = await self._blobs.get(storage_key)
        if data is None:
            return None
        try:
            made = await asyncio.to_thread(make_thumbnail, data, self._max_pixels)
        except ValueError as exc:
            log.warning("no thumbnail for %s: %s", storage_key, exc)
            return None
        try:
            await self._blobs.put(thumbnail_key, made.data)
        except ImagegateError as exc:  # storage full or down: made again when next needed
            log.warning("thumbnail %s not stored: %s", thumbnail_key, exc.message)
            return None
        await self._records.set_placeholder(thumbnail_key, made.placeholder)
        self._recent[thumbnail_key] = made.placeholder
        return len(made.data)
