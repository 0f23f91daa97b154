"""``iter_blobs`` lists only names the gateway could have made: a crashed write's temporary
file, a foreign file, or an object outside the store's prefix is never offered for cleanup."""

from __future__ import annotations

from pathlib import Path

from tests.support.s3 import S3Server

from imagegate.models import OutputFormat
from imagegate.storage.base import content_key
from imagegate.storage.local import LocalBlobStore
from imagegate.storage.s3 import S3BlobStore

KEY = content_key(b"kept bytes", OutputFormat.PNG)


async def test_local_listing_skips_temporary_and_foreign_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs", "http://img.test")
    await store.put(KEY, b"kept bytes")
    folder = tmp_path / "blobs" / KEY[:2] / KEY[2:4]
    (folder / ".tmp-abc123").write_bytes(b"half a write")
    (folder / "notes.txt").write_text("not an image")
    other = content_key(b"misplaced", OutputFormat.PNG)
    (tmp_path / "blobs" / other).write_bytes(b"misplaced")  # not under ab/cd/
    (folder / other).write_bytes(b"misplaced")  # under another key's folders
    assert [info.key async for info in store.iter_blobs()] == [KEY]


async def test_s3_listing_stays_inside_its_prefix(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    raw = s3_server.client()
    raw.put_object(Bucket=bucket, Key=f"other/{KEY}", Body=b"another store's")
    raw.put_object(Bucket=bucket, Key="blobs/readme.txt", Body=b"not an image")
    store = S3BlobStore(s3_server.settings(bucket, prefix="blobs"), "http://img.test")
    try:
        await store.put(KEY, b"kept bytes")
        listed = [info async for info in store.iter_blobs()]
    finally:
        await store.aclose()
    assert [(info.key, info.size) for info in listed] == [(KEY, len(b"kept bytes"))]
    assert listed[0].modified.tzinfo is not None
