"""Storage cleanup: orphan blobs, records whose blob is gone, expired cache entries, and
(when a retention period is set) old unpinned images.

A blob is only deleted when no image record refers to it (as its image or its thumbnail)
and it is older than the grace period: a generation stores its blobs before it commits its
record, so a young unreferenced blob may be a write in flight. Just before each delete the
reference is checked again, since a new record may reuse an old blob (same bytes, same key).
A record whose thumbnail is missing while its image is stored is repaired: the thumbnail is
made again from the image under the same key (``thumbnail_key_for`` derives it from the image's
content hash, so the record's URL stays right). A record whose image is gone is only reported:
the bytes cannot be brought back. Records older than the grace period only: a young record's
thumbnail may still be on its way from the background maker.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from imagegate.db.base import BlobUse, ImageRepository, MaintenanceRepository
from imagegate.errors import Unavailable
from imagegate.storage.base import BlobInfo, BlobStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]
"""Called as ``progress(step, done, total)``; ``total`` is None while it is not known."""

CATEGORIES = (
    "orphan_blobs",
    "young_orphans_kept",
    "repaired_thumbnails",
    "missing_blobs",
    "expired_cache_entries",
    "expired_images",
)


@dataclass(slots=True)
class Tally:
    count: int = 0
    bytes: int = 0

    def add(self, size: int = 0) -> None:
        self.count += 1
        self.bytes += size


@dataclass(slots=True)
class CleanupReport:
    """What a cleanup removed (or, in a dry run, would remove), by category.

    ``orphan_blobs``: blobs no record refers to, older than the grace period (deleted).
    ``young_orphans_kept``: unreferenced blobs younger than the grace period (kept).
    ``repaired_thumbnails``: records whose thumbnail was gone while their image is stored: the
    thumbnail made again (count: records; bytes: thumbnails written, each once; a dry run
    writes nothing and counts 0 bytes).
    ``missing_blobs``: records that cannot be repaired: their image is gone, or their missing
    thumbnail could not be made again from it (reported only; no bytes).
    ``expired_cache_entries``: cache index rows past their expiry (deleted; no bytes).
    ``expired_images``: unpinned image records older than the retention period (deleted;
    bytes are those of the blobs freed with them).
    """

    dry_run: bool
    orphan_blobs: Tally = field(default_factory=Tally)
    young_orphans_kept: Tally = field(default_factory=Tally)
    repaired_thumbnails: Tally = field(default_factory=Tally)
    missing_blobs: Tally = field(default_factory=Tally)
    expired_cache_entries: Tally = field(default_factory=Tally)
    expired_images: Tally = field(default_factory=Tally)
    freed_keys: list[str] = field(default_factory=list)
    """Blobs deleted (or to be deleted), in order."""
    missing_records: list[str] = field(default_factory=list)
    """Ids of the records that cannot be repaired (``missing_blobs``)."""
    repaired_records: list[str] = field(default_factory=list)
    """Ids of the records whose thumbnail was (or, in a dry run, would be) made again."""

    def tallies(self) -> dict[str, Tally]:
        return {name: getattr(self, name) for name in CATEGORIES}


def _noop(step: str, done: int, total: int | None) -> None:
    """No progress shown."""


class ThumbnailMaker(Protocol):
    async def remake(self, storage_key: str, thumbnail_key: str) -> int | None: ...


class MaintenanceService:
    def __init__(
        self,
        maintenance: MaintenanceRepository,
        images: ImageRepository,
        blobs: BlobStore,
        thumbnails: ThumbnailMaker | None = None,
        *,
        grace_seconds: float,
        retention_days: int | None,
        forget_cached: Callable[[str, str], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._maintenance = maintenance
        self._images = images
        self._blobs = blobs
        self._thumbnails = thumbnails
        self._grace = timedelta(seconds=grace_seconds)
        self._retention = None if retention_days is None else timedelta(days=retention_days)
        self._forget_cached = forget_cached
        self._clock = clock

    async def cleanup(self, *, dry_run: bool, progress: Progress | None = None) -> CleanupReport:
        show = progress or _noop
        now = self._clock()
        young = now - self._grace
        report = CleanupReport(dry_run=dry_run)

        # List the blobs before reading the records: a blob stored after the listing is not
        # in it, and one stored just before is young, so neither can be taken for an orphan.
        stored: dict[str, BlobInfo] = {}
        async for info in self._blobs.iter_blobs():
            stored[info.key] = info
            if len(stored) % 1000 == 0:
                show("listing blobs", len(stored), None)
        show("listing blobs", len(stored), len(stored))
        uses = await self._maintenance.blob_uses()
        users: dict[str, set[str]] = defaultdict(set)
        for use in uses:
            for key in _keys(use):
                users[key].add(use.image_id)

        expired = self._expired_images(uses, now)
        await self._repair(uses, stored, {use.image_id for use in expired}, young, report,
                           dry_run=dry_run, show=show)  # fmt: skip
        doomed = await self._retire(expired, users, stored, report, dry_run=dry_run)
        show("expired images", len(expired), len(expired))

        orphans = [info for key, info in stored.items() if key not in users]
        for done, info in enumerate(orphans, 1):
            if info.modified > young:
                report.young_orphans_kept.add(info.size)
            elif dry_run or await self._delete_blob(info.key):
                report.orphan_blobs.add(info.size)
                report.freed_keys.append(info.key)
            show("orphan blobs", done, len(orphans))
        for key in doomed:
            blob = stored.get(key)
            if blob is None or blob.modified > young:
                continue
            if dry_run or await self._delete_blob(key):
                report.expired_images.bytes += blob.size
                report.freed_keys.append(key)

        entries = (
            await self._maintenance.expired_cache_entries(now)
            if dry_run
            else await self._maintenance.delete_expired_cache_entries(now)
        )
        for scope, cache_key in entries:
            report.expired_cache_entries.add()
            if not dry_run:
                await self._forget(scope, cache_key)
        show("cache entries", len(entries), len(entries))
        return report

    async def _repair(
        self,
        uses: list[BlobUse],
        stored: dict[str, BlobInfo],
        expired: set[str],
        young: datetime,
        report: CleanupReport,
        *,
        dry_run: bool,
        show: Progress,
    ) -> None:
        """Make missing thumbnails again from their images; report what cannot be repaired.

        Records about to be deleted for retention are neither repaired nor reported, and
        records newer than the grace period are left alone: the listing was taken before the
        records were read, so such a record may point at a blob stored after it, and its
        thumbnail may still be on its way."""
        broken = [
            use
            for use in uses
            if use.created_at < young
            and use.image_id not in expired
            and any(key not in stored for key in _keys(use))
        ]
        made: dict[str, int | None] = {}  # thumbnail key -> bytes written (None: failed)
        for done, use in enumerate(broken, 1):
            show("missing blobs", done, len(broken))
            key = use.thumbnail_key
            if use.storage_key not in stored or key is None or self._thumbnails is None:
                report.missing_blobs.add()
                report.missing_records.append(use.image_id)
                continue
            if key not in made:  # records sharing an image share its thumbnail: made once
                made[key] = 0 if dry_run else await self._thumbnails.remake(use.storage_key, key)
                if made[key] is not None:
                    report.repaired_thumbnails.bytes += made[key] or 0
            if made[key] is None:
                report.missing_blobs.add()
                report.missing_records.append(use.image_id)
            else:
                report.repaired_thumbnails.count += 1
                report.repaired_records.append(use.image_id)

    def _expired_images(self, uses: list[BlobUse], now: datetime) -> list[BlobUse]:
        if self._retention is None:
            return []
        cutoff = now - self._retention
        return [use for use in uses if not use.pinned and use.created_at < cutoff]

    async def _retire(
        self,
        expired: list[BlobUse],
        users: dict[str, set[str]],
        stored: dict[str, BlobInfo],
        report: CleanupReport,
        *,
        dry_run: bool,
    ) -> list[str]:
        """Delete (or count) the expired records; the blobs no remaining record refers to."""
        doomed: list[str] = []
        for use in expired:
            if dry_run:
                freed = []
                for key in _keys(use):
                    users[key].discard(use.image_id)
                    if not users[key]:
                        freed.append(key)
            else:
                removal = await self._images.delete(use.image_id)
                if removal is None:
                    continue  # deleted meanwhile
                freed = list(removal.unreferenced_keys)
                for scope, cache_key in removal.cache_entries:
                    await self._forget(scope, cache_key)
            report.expired_images.count += 1
            doomed.extend(k for k in freed if k in stored)
        return doomed

    async def _delete_blob(self, key: str) -> bool:
        if await self._maintenance.is_referenced(key):
            return False
        try:
            await self._blobs.delete(key)
        except Unavailable as exc:  # one stuck blob must not stop the rest; the next run retries
            log.warning("cleanup could not delete blob %s: %r", key, exc)
            return False
        return True

    async def _forget(self, scope: str, cache_key: str) -> None:
        if self._forget_cached is not None:
            await self._forget_cached(scope, cache_key)


def _keys(use: BlobUse) -> list[str]:
    return [use.storage_key] if use.thumbnail_key is None else [use.storage_key, use.thumbnail_key]
