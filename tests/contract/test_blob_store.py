"""One suite for every BlobStore implementation (local disk today)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from imagegate.errors import StorageError
from imagegate.models import OutputFormat
from imagegate.storage.base import BlobStore, content_key, mime_for_key
from imagegate.storage.local import LocalBlobStore

PNG_KEY = content_key(b"fake png bytes", OutputFormat.PNG)


@pytest.fixture(params=["local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    factories: dict[str, Callable[[], BlobStore]] = {
        "local": lambda: LocalBlobStore(tmp_path / "blobs", "https://img.example.com/"),
    }
    return factories[request.param]()


async def test_put_then_get_returns_the_same_bytes(store: BlobStore) -> None:
    await store.put(PNG_KEY, b"fake png bytes")
    assert await store.get(PNG_KEY) == b"fake png bytes"
    assert await store.exists(PNG_KEY)


async def test_unknown_key_is_none(store: BlobStore) -> None:
    assert await store.get(content_key(b"never stored", OutputFormat.PNG)) is None


async def test_putting_the_same_key_twice_keeps_one_copy(store: BlobStore) -> None:
    await store.put(PNG_KEY, b"fake png bytes")
    await store.put(PNG_KEY, b"fake png bytes")
    assert await store.get(PNG_KEY) == b"fake png bytes"


async def test_delete_removes_and_is_idempotent(store: BlobStore) -> None:
    await store.put(PNG_KEY, b"fake png bytes")
    await store.delete(PNG_KEY)
    await store.delete(PNG_KEY)
    assert await store.get(PNG_KEY) is None


@pytest.mark.parametrize(
    "key",
    ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "abc.png", PNG_KEY.upper(), PNG_KEY + "/x", ""],
)
async def test_keys_it_could_not_have_made_are_never_read(store: BlobStore, key: str) -> None:
    assert await store.get(key) is None
    assert not await store.exists(key)


def test_urls_are_permanent_gateway_urls(store: BlobStore) -> None:
    assert store.url_for(PNG_KEY) == f"https://img.example.com/files/{PNG_KEY}"


def test_content_keys_name_the_hash_and_the_format() -> None:
    key = content_key(b"abc", OutputFormat.WEBP)
    assert key == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.webp"
    assert mime_for_key(key) == "image/webp"


async def test_a_failed_local_write_leaves_no_file_under_a_real_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path / "blobs", "http://x")

    def crash(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StorageError, match="No space left"):
        await store.put(PNG_KEY, b"fake png bytes")
    assert await store.get(PNG_KEY) is None
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []
