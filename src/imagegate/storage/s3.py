"""S3-compatible BlobStore (AWS S3, MinIO, Cloudflare R2, Ceph RGW, ...) on aiobotocore.

Objects are named ``PREFIX<sha256>.<ext>``. One PutObject is atomic in S3: the object appears
whole when its upload completes, or not at all, so unlike the local store there is no temporary
name to clean up after a crash. ``Content-MD5`` makes the store refuse a body that arrived cut
short, and ``If-None-Match: *`` turns a second put of a key into a refused no-op (412) instead
of an overwrite; a store that ignores the condition overwrites the same bytes, which is as safe.

Every failure of the store is a ``StorageError`` (``Unavailable`` from the readiness check).
Messages name the bucket and the store's error code, never a credential. The client is made on
first use (making one needs the event loop) and closed by ``aclose``.
Needs the ``s3`` extra: ``pip install 'imagegate[s3]'``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from functools import partial
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from pydantic import SecretStr

from imagegate.errors import ConfigurationError, StorageError, Unavailable
from imagegate.models import BlobLink, BlobStream
from imagegate.settings import S3Settings
from imagegate.storage.base import BlobInfo, is_valid_key, mime_for_key

try:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as exc:
    raise ConfigurationError(
        "IMAGEGATE_STORAGE__BACKEND=s3 needs the S3 client: pip install 'imagegate[s3]'",
        param="IMAGEGATE_STORAGE__BACKEND",
    ) from exc

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_s3 import S3Client

IMMUTABLE = "public, max-age=31536000, immutable"
"""Stored on every object, so a presigned or public/CDN URL caches like ``/files/``."""

STREAM_CHUNK_BYTES = 64 * 1024

T = TypeVar("T")

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_STORE_FAILURES = (BotoCoreError, ClientError, OSError)


class S3BlobStore:
    def __init__(self, settings: S3Settings, gateway_url: str) -> None:
        if not settings.bucket:
            raise ConfigurationError(
                "IMAGEGATE_STORAGE__BACKEND=s3 needs IMAGEGATE_STORAGE__S3__BUCKET",
                param="IMAGEGATE_STORAGE__S3__BUCKET",
            )
        endpoint = urlsplit(settings.endpoint_url or "https://s3.amazonaws.com")
        if endpoint.scheme not in {"http", "https"} or not endpoint.netloc:
            raise ConfigurationError(
                f"IMAGEGATE_STORAGE__S3__ENDPOINT_URL={settings.endpoint_url!r} is not an "
                "http(s) URL",
                param="IMAGEGATE_STORAGE__S3__ENDPOINT_URL",
            )
        self._settings = settings
        self._bucket = settings.bucket
        self._prefix = settings.prefix.strip("/") + "/" if settings.prefix.strip("/") else ""
        public = settings.public_base_url
        self._url_base = (
            f"{public.rstrip('/')}/{self._prefix}"
            if public
            else f"{gateway_url.rstrip('/')}/files/"
        )
        self._client: S3Client | None = None
        self._client_lock = asyncio.Lock()
        self._exit = AsyncExitStack()

    def url_for(self, key: str) -> str:
        return self._url_base + key

    def _name(self, key: str) -> str:
        if not is_valid_key(key):
            raise ValueError(f"not a storage key: {key!r}")
        return self._prefix + key

    async def _s3(self) -> S3Client:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    self._client = await self._exit.enter_async_context(self._new_client())
        return self._client

    def _new_client(self) -> ClientCreatorContext[S3Client]:
        s = self._settings
        config = AioConfig(
            region_name=s.region,
            connect_timeout=s.timeout_seconds,
            read_timeout=s.timeout_seconds,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=s.max_connections,
            s3={"addressing_style": s.addressing_style},
            # SigV4 for presigned URLs too (botocore would sign us-east-1 links with SigV2,
            # which newer regions and most S3-compatible stores refuse).
            signature_version="s3v4",
            # Only the checksums a request needs: several S3-compatible stores refuse the
            # CRC32 trailers newer botocore adds by default. Content-MD5 is sent instead.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return get_session().create_client(
            "s3",
            endpoint_url=s.endpoint_url,
            aws_access_key_id=_reveal(s.access_key_id),
            aws_secret_access_key=_reveal(s.secret_access_key),
            config=config,
        )

    def _failure(self, action: str, exc: Exception) -> StorageError:
        return StorageError(f"S3 bucket {self._bucket!r}: could not {action}: {_describe(exc)}")

    async def _ask(self, action: str, request: Awaitable[T]) -> T | None:
        """The store's answer to ``request``; None when it says there is no such object; any
        other failure as a StorageError that names ``action``."""
        try:
            return await request
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._failure(action, exc) from exc
        except _STORE_FAILURES as exc:
            raise self._failure(action, exc) from exc

    async def put(self, key: str, data: bytes) -> None:
        s3 = await self._s3()
        upload = partial(
            s3.put_object,
            Bucket=self._bucket,
            Key=self._name(key),
            Body=data,
            ContentMD5=base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode(),
            ContentType=mime_for_key(key),
            CacheControl=IMMUTABLE,
        )
        try:
            try:
                await upload(IfNoneMatch="*")
            except ClientError as exc:
                code = _code(exc)
                if code in {"PreconditionFailed", "412"}:
                    return  # already stored: a content key's bytes never differ
                if code != "ConditionalRequestConflict":
                    raise
                # Another upload of this key is in flight and may yet fail: store it without
                # the condition rather than trust that one.
                await upload()
        except _STORE_FAILURES as exc:
            raise self._failure("store image", exc) from exc

    async def get(self, key: str) -> bytes | None:
        if not is_valid_key(key):
            return None
        s3 = await self._s3()
        response = await self._ask(
            "read image", s3.get_object(Bucket=self._bucket, Key=self._name(key))
        )
        if response is None:
            return None
        async with response["Body"] as body:
            return await self._ask("read image", body.read())

    async def open(self, key: str) -> BlobStream | BlobLink | None:
        if not is_valid_key(key):
            return None
        if self._settings.delivery == "redirect":
            return await self._link(key)
        s3 = await self._s3()
        response = await self._ask(
            "read image", s3.get_object(Bucket=self._bucket, Key=self._name(key))
        )
        if response is None:
            return None
        body = response["Body"]
        return BlobStream(
            size=response["ContentLength"],
            chunks=body.iter_chunks(STREAM_CHUNK_BYTES),
            aclose=body.aclose,
        )

    async def _link(self, key: str) -> BlobLink | None:
        """A presigned GET, once the object is known to exist: a missing image stays the
        gateway's 404 rather than the store's."""
        if not await self.exists(key):
            return None
        s3 = await self._s3()
        seconds = self._settings.presign_seconds
        params = {"Bucket": self._bucket, "Key": self._name(key)}
        url = await self._ask(
            "sign a URL", s3.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)
        )
        return None if url is None else BlobLink(url=url, expires_seconds=seconds)

    async def exists(self, key: str) -> bool:
        if not is_valid_key(key):
            return False
        s3 = await self._s3()
        found = await self._ask(
            "look up image", s3.head_object(Bucket=self._bucket, Key=self._name(key))
        )
        return found is not None

    async def delete(self, key: str) -> None:
        if is_valid_key(key):
            s3 = await self._s3()
            await self._ask(
                "delete image", s3.delete_object(Bucket=self._bucket, Key=self._name(key))
            )

    async def iter_blobs(self) -> AsyncIterator[BlobInfo]:
        """ListObjectsV2 under the prefix, a page (up to 1000 objects) at a time."""
        s3 = await self._s3()
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._prefix
        )
        try:
            async for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(self._prefix) :]
                    if is_valid_key(key):
                        yield BlobInfo(key=key, size=item["Size"], modified=item["LastModified"])
        except _STORE_FAILURES as exc:
            raise self._failure("list images", exc) from exc

    async def check(self) -> None:
        """HeadBucket: the bucket exists and these credentials may use it."""
        try:
            s3 = await self._s3()
            await s3.head_bucket(Bucket=self._bucket)
        except _STORE_FAILURES as exc:
            raise Unavailable(
                f"S3 bucket {self._bucket!r} is not usable: {_describe(exc)}"
            ) from exc

    async def aclose(self) -> None:
        await self._exit.aclose()
        self._client = None


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        code = error.get("Code", "")
        parts = (status, "" if code == status else code, error.get("Message", ""))
        return " ".join(p for p in parts if p)
    return str(exc) or type(exc).__name__
