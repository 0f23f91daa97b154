"""Cleanup of an S3 bucket (moto's server on loopback): S3 sets an object's time itself, so
"two hours later" is the service's clock moved on, not a file's time moved back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.s3 import S3Server

from imagegate.container import build_services
from imagegate.db.engine import AsyncTransactions, create_engine
from imagegate.db.images import SqlImageRepository
from imagegate.db.maintenance import SqlMaintenanceRepository
from imagegate.models import GenerationRequest, OutputFormat, Role
from imagegate.services.maintenance import MaintenanceService
from imagegate.settings import DatabaseSettings, Settings, StorageSettings
from imagegate.storage.base import content_key
from imagegate.storage.s3 import S3BlobStore


async def test_old_orphans_go_from_the_bucket_and_used_blobs_stay(
    tmp_path: Path, s3_server: S3Server
) -> None:
    bucket = s3_server.new_bucket()
    s3 = s3_server.settings(bucket, prefix="images")
    settings = Settings(
        data_dir=tmp_path / "data",
        public_url="http://img.test",
        storage=StorageSettings(backend="s3", s3=s3),
    )
    async with build_services(settings) as services:
        secret = (await services.keys.create("alice", Role.USER)).secret
        alice = await services.keys.authenticate(f"Bearer {secret}")
        await services.generations.generate(
            alice, GenerationRequest(prompt="a lighthouse", size="256x256")
        )
    used = set(s3_server.object_names(bucket))
    assert len(used) == 2  # the image and its thumbnail

    store = S3BlobStore(s3, settings.base_url)
    orphan = content_key(b"left behind", OutputFormat.PNG)
    await store.put(orphan, b"left behind")
    engine = create_engine(settings.database_url, DatabaseSettings(url=settings.database_url))
    writes = AsyncTransactions(engine).run

    def cleaner(later: timedelta) -> MaintenanceService:
        return MaintenanceService(
            SqlMaintenanceRepository(engine, writes),
            SqlImageRepository(engine, writes),
            store,
            grace_seconds=3600,
            retention_days=None,
            clock=lambda: datetime.now(UTC) + later,
        )

    try:
        now = await cleaner(timedelta(0)).cleanup(dry_run=False)
        assert (now.orphan_blobs.count, now.young_orphans_kept.count) == (0, 1)
        later = await cleaner(timedelta(hours=2)).cleanup(dry_run=False)
        assert (later.orphan_blobs.count, later.orphan_blobs.bytes) == (1, len(b"left behind"))
        assert later.missing_blobs.count == 0
    finally:
        await store.aclose()
        await engine.dispose()
    assert set(s3_server.object_names(bucket)) == used
