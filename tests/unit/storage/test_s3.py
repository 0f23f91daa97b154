"""What the S3 store decides before it talks to a store: names, URLs, settings, the extra.
(Its behaviour against a real S3 server is in tests/contract and tests/integration.)"""

from __future__ import annotations

import importlib
import sys

import pytest

from imagegate.errors import ConfigurationError
from imagegate.models import OutputFormat
from imagegate.settings import S3Settings, load_settings
from imagegate.storage.base import content_key
from imagegate.storage.s3 import S3BlobStore

KEY = content_key(b"png", OutputFormat.PNG)


@pytest.mark.parametrize(
    ("prefix", "public", "url"),
    [
        ("", None, f"https://gw.example/files/{KEY}"),
        ("images", None, f"https://gw.example/files/{KEY}"),  # the prefix stays private
        ("", "https://cdn.example/", f"https://cdn.example/{KEY}"),
        ("/images/", "https://cdn.example", f"https://cdn.example/images/{KEY}"),
    ],
)
def test_image_urls_are_the_gateways_unless_a_public_base_is_set(
    prefix: str, public: str | None, url: str
) -> None:
    store = S3BlobStore(
        S3Settings(bucket="b", prefix=prefix, public_base_url=public), "https://gw.example/"
    )
    assert store.url_for(KEY) == url


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (S3Settings(), "IMAGEGATE_STORAGE__S3__BUCKET"),
        (S3Settings(bucket="b", endpoint_url="minio:9000"), "IMAGEGATE_STORAGE__S3__ENDPOINT_URL"),
        (S3Settings(bucket="b", endpoint_url="ftp://x"), "IMAGEGATE_STORAGE__S3__ENDPOINT_URL"),
    ],
)
def test_a_store_that_cannot_work_stops_start_up(settings: S3Settings, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        S3BlobStore(settings, "https://gw.example")


def test_settings_come_from_the_environment_and_hide_the_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMAGEGATE_STORAGE__BACKEND", "s3")
    monkeypatch.setenv("IMAGEGATE_STORAGE__S3__BUCKET", "images")
    monkeypatch.setenv("IMAGEGATE_STORAGE__S3__ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("IMAGEGATE_STORAGE__S3__SECRET_ACCESS_KEY", "very-secret")
    monkeypatch.setenv("IMAGEGATE_STORAGE__S3__DELIVERY", "redirect")
    settings = load_settings()
    s3 = settings.storage.s3
    assert (settings.storage.backend, s3.bucket, s3.endpoint_url) == (
        "s3",
        "images",
        "http://minio:9000",
    )
    assert s3.delivery == "redirect"
    assert "very-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMAGEGATE_STORAGE__BACKEND", "gcs"),
        ("IMAGEGATE_STORAGE__S3__DELIVERY", "proxy"),
        ("IMAGEGATE_STORAGE__S3__PRESIGN_SECONDS", "0"),
    ],
)
def test_bad_storage_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert name in caught.value.message


def test_without_the_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "aiobotocore.session", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "imagegate.storage.s3")
    with pytest.raises(ConfigurationError, match=r"pip install 'imagegate\[s3\]'"):
        importlib.import_module("imagegate.storage.s3")
