"""Storage cleanup: orphan blobs, records whose blob is gone, expired cache entries, and
(when a retention period is set) old unpinned images.

A blob is only deleted when no image record refers to it (as its image or its thumbnail)
and it is older than the grace period: a generation stores its blobs before it commits its
record, so a young unreferenced blob may be a write in flight. Just before each delete the
reference is checked again, since a new record may reuse an old blob (same bytes, same key).
Records whose blob is missing are only reported: the bytes cannot be brought back.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from imagegate.db.base import BlobUse, ImageRepository, MaintenanceRepository
from imagegate.errors import Unavailable
from imagegate.storage.base import BlobInfo, BlobStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]
"""Called as ``progress(step, done, total)``; ``total`` is None while it is not known."""

CATEGORIES = (
    "orphan_blobs",
    "young_orphans_kept",
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
    ``missing_blobs``: records whose image or thumbnail blob is gone (reported only; bytes
    are the records' recorded image sizes).
    ``expired_cache_entries``: cache index rows past their expiry (deleted; no bytes).
    ``expired_images``: unpinned image records older than the retention period (deleted;
    bytes are those of the blobs freed with them).
    """

    dry_run: bool
    orphan_blobs: Tally = field(default_factory=Tally)
    young_orphans_kept: Tally = field(default_factory=Tally)
    missing_blobs: Tally = field(default_factory=Tally)
    expired_cache_entries: Tally = field(default_factory=Tally)
    expired_images: Tally = field(default_factory=Tally)
    freed_keys: list[str] = field(default_factory=list)
    """Blobs deleted (or to be deleted), in order."""
    missing_records: list[str] = field(default_factory=list)
    """Ids of the records whose blob is missing."""

    def tallies(self) -> dict[str, Tally]:
        return {name: getattr(self, name) for name in CATEGORIES}


def _noop(step: str, done: int, total: int | None) -> None:
    """No progress shown."""


class MaintenanceService:
    def __init__(
        self,
        maintenance: MaintenanceRepository,
        images: ImageRepository,
        blobs: BlobStore,
        *,
        grace_seconds: float,
        retention_days: int | None,
        forget_cached: Callable[[str, str], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._maintenance = maintenance
        self._images = images
        self._blobs = blobs
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

        for use in uses:
            missing = [key for key in _keys(use) if key not in stored]
            # A record newer than the listing may point at a blob stored after it.
            if missing and use.created_at < young:
                report.missing_blobs.add(0)
                report.missing_records.append(use.image_id)

        expired = self._expired_images(uses, now)
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
