"""``MaintenanceService.cleanup`` on a real library (SQLite and PostgreSQL, local storage).

The store is seeded through the real generation path, then aged and damaged by hand: an old
orphan blob, a young orphan (a write in flight), a record whose blob is gone, an expired
cache entry, and old images (one pinned, one sharing its blob with a newer record). A second
seed loses thumbnails (and images) to check that cleanup makes the thumbnails again.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa
from PIL import Image

from imagegate.api.app import create_app
from imagegate.container import Services, build_services
from imagegate.db.engine import create_engine
from imagegate.db.tables import cache_entries, images
from imagegate.models import GenerationRequest, ImageQuery, OutputFormat, Principal, Role
from imagegate.services.maintenance import CleanupReport
from imagegate.settings import DatabaseSettings, Settings
from imagegate.storage.base import content_key
from imagegate.storage.local import LocalBlobStore

HOUR = 3600


def _settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_url="http://img.test",
        database=DatabaseSettings(url=database_url),
        retention_days=30,
        cleanup_grace_seconds=HOUR,
    )


@dataclass
class Seeded:
    old: str
    """Old, unpinned, its blobs used by no one else: record and blobs go."""
    old_keys: list[str]
    old_bytes: int
    pinned: str
    shared_old: str
    """Old, unpinned, but a newer cache hit uses the same blob: record goes, blob stays."""
    shared_keys: list[str]
    missing: str
    """Recent record whose image blob was deleted behind the gateway's back."""
    old_orphan: str
    old_orphan_bytes: int
    young_orphan: str


async def _generate(services: Services, principal: Principal, prompt: str) -> str:
    result = await services.generations.generate(
        principal, GenerationRequest(prompt=prompt, size="256x256")
    )
    return result.generation.id


def _age_files(root: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (stamp, stamp))


async def _seed(services: Services, settings: Settings, database_url: str) -> Seeded:
    issued = await services.keys.create("alice", Role.USER)
    alice = await services.keys.authenticate(f"Bearer {issued.secret}")
    generation = {p: await _generate(services, alice, p) for p in ("old", "pinned", "shared")}
    generation["missing"] = await _generate(services, alice, "missing")
    await _generate(services, alice, "shared")  # a cache hit: a second record, same blobs
    by_generation = {}
    for name, generation_id in generation.items():
        (record,) = (await services.images.generation(alice, generation_id)).images
        by_generation[name] = record.record
    await services.images.update(alice, by_generation["pinned"].id, pinned=True)

    root = settings.storage_root
    store = LocalBlobStore(root, settings.base_url)  # writing behind the gateway's back
    _age_files(root, 2 * HOUR)  # every blob written so far is past the grace period
    orphan = b"bytes no record refers to"
    orphan_key = content_key(orphan, OutputFormat.PNG)
    await store.put(orphan_key, orphan)
    _age_files(root, 2 * HOUR)
    young = content_key(b"a write in flight", OutputFormat.WEBP)
    await store.put(young, b"a write in flight")
    missing = by_generation["missing"].image
    (root / missing.storage_key[:2] / missing.storage_key[2:4] / missing.storage_key).unlink()

    long_ago = datetime.now(UTC) - timedelta(days=60)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    engine = create_engine(database_url, DatabaseSettings(url=database_url))
    try:
        async with engine.begin() as conn:
            for name in ("old", "pinned", "shared"):
                await conn.execute(
                    images.update()
                    .where(images.c.id == by_generation[name].id)
                    .values(created_at=long_ago)
                )
            await conn.execute(
                images.update()
                .where(images.c.id == by_generation["missing"].id)
                .values(created_at=two_hours_ago)
            )
            await conn.execute(
                cache_entries.insert().values(
                    scope="global",
                    cache_key="f" * 64,
                    generation_id=generation["missing"],
                    created_at=long_ago,
                    expires_at=two_hours_ago,
                )
            )
    finally:
        await engine.dispose()

    old = by_generation["old"].image
    old_keys = [old.storage_key, old.thumbnail_key or ""]
    shared = by_generation["shared"].image
    return Seeded(
        old=by_generation["old"].id,
        old_keys=old_keys,
        old_bytes=sum(_file(root, k).stat().st_size for k in old_keys),
        pinned=by_generation["pinned"].id,
        shared_old=by_generation["shared"].id,
        shared_keys=[shared.storage_key, shared.thumbnail_key or ""],
        missing=by_generation["missing"].id,
        old_orphan=orphan_key,
        old_orphan_bytes=len(orphan),
        young_orphan=young,
    )


def _file(root: Path, key: str) -> Path:
    return root / key[:2] / key[2:4] / key


def _stored(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*") if p.is_file()}


def _assert_finds_the_planted_faults(report: CleanupReport, seeded: Seeded) -> None:
    tallies = {name: (t.count, t.bytes) for name, t in report.tallies().items()}
    assert tallies == {
        "orphan_blobs": (1, seeded.old_orphan_bytes),
        "young_orphans_kept": (1, len(b"a write in flight")),
        "repaired_thumbnails": (0, 0),
        "missing_blobs": (1, 0),
        "expired_cache_entries": (1, 0),
        "expired_images": (2, seeded.old_bytes),
    }
    assert sorted(report.freed_keys) == sorted([seeded.old_orphan, *seeded.old_keys])
    assert report.missing_records == [seeded.missing]


async def _cache_rows(database_url: str) -> int:
    engine = create_engine(database_url, DatabaseSettings(url=database_url))
    try:
        async with engine.connect() as conn:
            return len(list(await conn.execute(sa.select(cache_entries.c.cache_key))))
    finally:
        await engine.dispose()


async def test_cleanup_removes_exactly_the_planted_orphans(
    tmp_path: Path, database_url: str
) -> None:
    settings = _settings(tmp_path, database_url)
    root = settings.storage_root
    async with build_services(settings) as services:
        seeded = await _seed(services, settings, database_url)
        before = _stored(root)
        cache_rows = await _cache_rows(database_url)
        admin = await services.keys.authenticate(
            f"Bearer {(await services.keys.create('root', Role.ADMIN)).secret}"
        )
        records = {
            v.record.id for v in (await services.images.list(admin, ImageQuery(), None, 100)).images
        }

        dry = await services.maintenance.cleanup(dry_run=True)
        assert dry.dry_run
        _assert_finds_the_planted_faults(dry, seeded)
        assert _stored(root) == before
        assert await _cache_rows(database_url) == cache_rows

        steps: list[str] = []
        done = await services.maintenance.cleanup(
            dry_run=False, progress=lambda step, _d, _t: steps.append(step)
        )
        assert not done.dry_run
        _assert_finds_the_planted_faults(done, seeded)
        assert "orphan blobs" in steps
        assert _stored(root) == before - {seeded.old_orphan, *seeded.old_keys}
        assert seeded.young_orphan in _stored(root)
        assert set(seeded.shared_keys) <= _stored(root)
        # The expired entry, and the entries of the two deleted images' generations.
        assert await _cache_rows(database_url) == cache_rows - 3
        left = {
            v.record.id for v in (await services.images.list(admin, ImageQuery(), None, 100)).images
        }
        assert left == records - {seeded.old, seeded.shared_old}
        assert seeded.pinned in left

        again = await services.maintenance.cleanup(dry_run=False)
        assert {n: t.count for n, t in again.tallies().items()} == {
            "orphan_blobs": 0,
            "young_orphans_kept": 1,
            "repaired_thumbnails": 0,
            "missing_blobs": 1,
            "expired_cache_entries": 0,
            "expired_images": 0,
        }


async def test_without_retention_old_images_stay(tmp_path: Path, database_url: str) -> None:
    settings = _settings(tmp_path, database_url).model_copy(update={"retention_days": None})
    async with build_services(settings) as services:
        seeded = await _seed(services, settings, database_url)
        report = await services.maintenance.cleanup(dry_run=False)
        assert report.expired_images.count == 0
        assert report.orphan_blobs.count == 1
        assert set(seeded.old_keys) <= _stored(settings.storage_root)


async def _age_records(database_url: str, image_ids: list[str], when: datetime) -> None:
    engine = create_engine(database_url, DatabaseSettings(url=database_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                images.update().where(images.c.id.in_(image_ids)).values(created_at=when)
            )
    finally:
        await engine.dispose()


async def test_cleanup_remakes_missing_thumbnails_from_their_images(
    tmp_path: Path, database_url: str
) -> None:
    settings = _settings(tmp_path, database_url).model_copy(update={"retention_days": None})
    root = settings.storage_root
    async with build_services(settings) as services:
        issued = await services.keys.create("alice", Role.USER)
        alice = await services.keys.authenticate(f"Bearer {issued.secret}")
        names = ("lost thumbnail", "shared", "lost image", "corrupt image", "young")
        generation = {name: await _generate(services, alice, name) for name in names}
        shared_again = await _generate(services, alice, "shared")  # a cache hit: same blobs
        await services.thumbnails.idle()
        record = {}
        for name, generation_id in [*generation.items(), ("shared again", shared_again)]:
            (view,) = (await services.images.generation(alice, generation_id)).images
            record[name] = view.record
        assert record["shared"].image.thumbnail_key == record["shared again"].image.thumbnail_key

        def thumbnail(name: str) -> Path:
            return _file(root, record[name].image.thumbnail_key or "")

        for name in ("lost thumbnail", "shared", "corrupt image", "young"):
            thumbnail(name).unlink()
        _file(root, record["lost image"].image.storage_key).unlink()
        _file(root, record["corrupt image"].image.storage_key).write_bytes(b"not an image")
        _age_files(root, 2 * HOUR)
        aged = [r.id for name, r in record.items() if name != "young"]
        await _age_records(database_url, aged, datetime.now(UTC) - timedelta(hours=2))
        before = _stored(root)

        dry = await services.maintenance.cleanup(dry_run=True)
        # A dry run decodes nothing: the corrupt image counts as repairable until it is tried.
        assert (dry.repaired_thumbnails.count, dry.repaired_thumbnails.bytes) == (4, 0)
        assert sorted(dry.repaired_records) == sorted(
            record[n].id for n in ("lost thumbnail", "shared", "shared again", "corrupt image")
        )
        assert (dry.missing_blobs.count, dry.missing_records) == (1, [record["lost image"].id])
        assert _stored(root) == before

        admin = (await services.keys.create("root", Role.ADMIN)).secret
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://img.test") as http:
            response = await http.post(
                "/v1/admin/cleanup",
                json={"dry_run": False},
                headers={"Authorization": f"Bearer {admin}"},
            )
        assert response.status_code == 200, response.text
        done = response.json()
        repaired = {"lost thumbnail", "shared", "shared again"}
        assert sorted(done["repaired_records"]) == sorted(record[n].id for n in repaired)
        assert sorted(done["missing_records"]) == sorted(
            record[n].id for n in ("lost image", "corrupt image")
        )
        written = [thumbnail("lost thumbnail"), thumbnail("shared")]
        assert done["categories"]["repaired_thumbnails"] == {
            "count": 3,
            "bytes": sum(p.stat().st_size for p in written),
        }
        assert done["categories"]["missing_blobs"] == {"count": 2, "bytes": 0}
        for path in written:
            with Image.open(io.BytesIO(path.read_bytes())) as made:
                assert (made.format, made.size) == ("WEBP", (300, 300))
        assert not thumbnail("young").exists()  # inside the grace period: left alone
        assert not thumbnail("corrupt image").exists()
        assert _stored(root) == before | {p.name for p in written}

        again = await services.maintenance.cleanup(dry_run=False)
        assert again.repaired_thumbnails.count == 0
        assert again.missing_blobs.count == 2
