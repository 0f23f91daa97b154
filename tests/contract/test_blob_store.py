"""One suite for every BlobStore implementation: local disk, and S3 (a real moto server on
loopback) both streaming through the gateway and handing out presigned links."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from tests.support.s3 import CuttingProxy, S3Server

from imagegate.errors import StorageError
from imagegate.models import BlobLink, BlobStream, OutputFormat
from imagegate.storage.base import BlobStore, content_key, mime_for_key
from imagegate.storage.local import LocalBlobStore
from imagegate.storage.s3 import S3BlobStore

PNG_KEY = content_key(b"fake png bytes", OutputFormat.PNG)
GATEWAY = "https://img.example.com/"


@pytest.fixture(params=["local", "s3", "s3-presigned"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    built: BlobStore
    if request.param == "local":
        built = LocalBlobStore(tmp_path / "blobs", GATEWAY)
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        delivery = "redirect" if request.param == "s3-presigned" else "stream"
        built = S3BlobStore(
            s3.settings(s3.new_bucket(), prefix="blobs", delivery=delivery), GATEWAY
        )
    try:
        yield built
    finally:
        await built.aclose()


async def _handed_out(store: BlobStore, key: str) -> bytes | None:
    """What a client of ``/files/{key}`` ends up with, whichever way the store hands it out."""
    source = await store.open(key)
    if source is None or isinstance(source, bytes):
        return source
    if isinstance(source, BlobStream):
        try:
            return b"".join([chunk async for chunk in source.chunks])
        finally:
            await source.aclose()
    assert isinstance(source, BlobLink)
    async with httpx.AsyncClient() as http:
        response = await http.get(source.url)
    assert response.status_code == 200
    return response.content


async def test_put_then_get_returns_the_same_bytes(store: BlobStore) -> None:
    await store.put(PNG_KEY, b"fake png bytes")
    assert await store.get(PNG_KEY) == b"fake png bytes"
    assert await store.exists(PNG_KEY)


async def test_open_hands_out_exactly_the_stored_bytes(store: BlobStore) -> None:
    large = os.urandom(300_000)  # several stream chunks
    key = content_key(large, OutputFormat.WEBP)
    await store.put(key, large)
    assert await _handed_out(store, key) == large


async def test_unknown_key_is_none(store: BlobStore) -> None:
    missing = content_key(b"never stored", OutputFormat.PNG)
    assert await store.get(missing) is None
    assert await store.open(missing) is None
    assert not await store.exists(missing)


async def test_putting_the_same_key_twice_keeps_one_copy(store: BlobStore) -> None:
    await store.put(PNG_KEY, b"fake png bytes")
    await store.put(PNG_KEY, b"fake png bytes")
    assert await store.get(PNG_KEY) == b"fake png bytes"


async def test_delete_removes_and_is_idempotent(store: BlobStore) -> None:
    await store.put(PNG_KEY, b"fake png bytes")
    await store.delete(PNG_KEY)
    await store.delete(PNG_KEY)
    assert await store.get(PNG_KEY) is None
    assert await store.open(PNG_KEY) is None


@pytest.mark.parametrize(
    "key",
    ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "abc.png", PNG_KEY.upper(), PNG_KEY + "/x", ""],
)
async def test_keys_it_could_not_have_made_are_never_read(store: BlobStore, key: str) -> None:
    assert await store.get(key) is None
    assert await store.open(key) is None
    assert not await store.exists(key)


def test_urls_are_permanent_gateway_urls(store: BlobStore) -> None:
    assert store.url_for(PNG_KEY) == f"https://img.example.com/files/{PNG_KEY}"


async def test_a_working_store_is_ready(store: BlobStore) -> None:
    await store.check()


def test_content_keys_name_the_hash_and_the_format() -> None:
    key = content_key(b"abc", OutputFormat.WEBP)
    assert key == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.webp"
    assert mime_for_key(key) == "image/webp"


@dataclass
class BrokenWrites:
    """A store whose writes die part-way, and a way to list everything its backend holds."""

    store: BlobStore
    stored_names: Callable[[], list[str]]


@pytest.fixture(params=["local", "s3"])
async def broken_writes(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[BrokenWrites]:
    if request.param == "local":
        root = tmp_path / "blobs"

        def disk_full(*_: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", disk_full)
        yield BrokenWrites(
            LocalBlobStore(root, GATEWAY),
            lambda: [str(p) for p in root.rglob("*") if p.is_file()],
        )
        return
    s3: S3Server = request.getfixturevalue("s3_server")
    bucket = s3.new_bucket()
    proxy = await CuttingProxy(s3.endpoint_url, limit=64 * 1024).start()
    settings = s3.settings(bucket).model_copy(update={"endpoint_url": proxy.endpoint_url})
    store = S3BlobStore(settings, GATEWAY)
    try:
        yield BrokenWrites(store, lambda: s3.object_names(bucket))
    finally:
        await store.aclose()
        await proxy.stop()


async def test_a_write_that_fails_part_way_leaves_nothing_under_any_name(
    broken_writes: BrokenWrites,
) -> None:
    data = os.urandom(256 * 1024)
    key = content_key(data, OutputFormat.PNG)
    with pytest.raises(StorageError, match="could not store image"):
        await broken_writes.store.put(key, data)
    assert broken_writes.stored_names() == []


async def test_listing_names_every_stored_blob_with_its_size_and_age(store: BlobStore) -> None:
    assert [info async for info in store.iter_blobs()] == []
    before = datetime.now(UTC) - timedelta(minutes=5)
    other = b"other bytes, longer"
    other_key = content_key(other, OutputFormat.WEBP)
    await store.put(PNG_KEY, b"fake png bytes")
    await store.put(other_key, other)
    listed = {info.key: info async for info in store.iter_blobs()}
    assert set(listed) == {PNG_KEY, other_key}
    assert listed[PNG_KEY].size == len(b"fake png bytes")
    assert listed[other_key].size == len(other)
    for info in listed.values():
        assert before < info.modified <= datetime.now(UTC) + timedelta(minutes=5)
    await store.delete(PNG_KEY)
    assert [info.key async for info in store.iter_blobs()] == [other_key]
