"""A gateway whose images live in S3 (moto's server on loopback): generate with the builtin
model, fetch the permanent URL, find the object in the bucket; a store that fails is a 503 and
leaves no record pointing at an image that is not there."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image
from tests.support import DataDir
from tests.support.s3 import S3Server

from imagegate.api.app import create_app
from imagegate.container import Services, build_services
from imagegate.models import Role
from imagegate.settings import S3Settings, Settings, StorageSettings

GATEWAY = "http://testserver"


@dataclass
class Gateway:
    http: httpx.AsyncClient
    auth: dict[str, str]
    data: DataDir
    services: Services

    async def generate(self, prompt: str, n: int = 1) -> httpx.Response:
        response = await self.http.post(
            "/v1/images/generations",
            json={"prompt": prompt, "size": "256x256", "n": n},
            headers=self.auth,
        )
        await self.services.thumbnails.idle()  # thumbnails are stored just after the answer
        return response


@asynccontextmanager
async def gateway(tmp_path: Path, s3: S3Settings) -> AsyncIterator[Gateway]:
    settings = Settings(
        data_dir=tmp_path / "data",
        public_url=GATEWAY,
        storage=StorageSettings(backend="s3", s3=s3),
    )
    async with build_services(settings) as services:
        secret = (await services.keys.create("alice", Role.USER)).secret
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url=GATEWAY) as http:
            yield Gateway(http, {"Authorization": f"Bearer {secret}"}, DataDir(settings), services)


def _keys(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [str(item["url"]).removeprefix(f"{GATEWAY}/files/") for item in response.json()["data"]]


def _stored(s3_server: S3Server, bucket: str, name: str) -> bytes:
    return bytes(s3_server.client().get_object(Bucket=bucket, Key=name)["Body"].read())


async def test_images_are_stored_in_the_bucket_and_streamed_from_files(
    tmp_path: Path, s3_server: S3Server
) -> None:
    bucket = s3_server.new_bucket()
    async with gateway(tmp_path, s3_server.settings(bucket, prefix="images/")) as gw:
        keys = _keys(await gw.generate("a red fox", n=2))
        names = s3_server.object_names(bucket)
        assert [n for n in names if n.endswith(".png")] == sorted(f"images/{k}" for k in keys)
        assert len(names) == 2 * len(keys)  # each image and its WebP thumbnail
        for key in keys:
            response = await gw.http.get(f"/files/{key}")
            assert response.status_code == 200
            assert response.content == _stored(s3_server, bucket, f"images/{key}")
            assert hashlib.sha256(response.content).hexdigest() == key.removesuffix(".png")
            assert Image.open(io.BytesIO(response.content)).size == (256, 256)
            assert response.headers["content-type"] == "image/png"
            assert response.headers["content-length"] == str(len(response.content))
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
            etag = response.headers["etag"]
            again = await gw.http.get(f"/files/{key}", headers={"If-None-Match": etag})
            assert (again.status_code, again.content) == (304, b"")
            head = await gw.http.head(f"/files/{key}")
            assert head.status_code == 200
            assert head.headers["content-length"] == str(len(response.content))
        missing = await gw.http.get("/files/" + "0" * 64 + ".png")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        ready = await gw.http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["storage"] == "ok"


async def test_objects_carry_their_type_and_immutable_caching(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """So a presigned or CDN URL caches the way /files/ does."""
    bucket = s3_server.new_bucket()
    async with gateway(tmp_path, s3_server.settings(bucket)) as gw:
        (key,) = _keys(await gw.generate("a lighthouse"))
    head = s3_server.client().head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "image/png"
    assert head["CacheControl"] == "public, max-age=31536000, immutable"


async def test_files_can_redirect_to_a_short_lived_presigned_url(
    tmp_path: Path, s3_server: S3Server
) -> None:
    bucket = s3_server.new_bucket()
    s3 = s3_server.settings(bucket, delivery="redirect", presign_seconds=120)
    async with gateway(tmp_path, s3) as gw:
        (key,) = _keys(await gw.generate("a red fox"))
        response = await gw.http.get(f"/files/{key}")
        assert response.status_code == 307
        assert response.headers["cache-control"] == "private, max-age=60"
        location = response.headers["location"]
        assert location.startswith(f"{s3_server.endpoint_url}/{bucket}/{key}?")
        assert "X-Amz-Expires=120" in location  # SigV4
        missing = await gw.http.get("/files/" + "0" * 64 + ".png")
        assert missing.status_code == 404  # the gateway's 404, not a link to the store's
    async with httpx.AsyncClient() as browser:
        followed = await browser.get(location)
    assert followed.status_code == 200
    assert followed.content == _stored(s3_server, bucket, key)
    assert followed.headers["content-type"] == "image/png"


async def test_a_public_base_url_makes_image_urls_point_at_the_bucket(
    tmp_path: Path, s3_server: S3Server
) -> None:
    bucket = s3_server.new_bucket()
    s3_server.allow_public_reads(bucket)
    public = f"{s3_server.endpoint_url}/{bucket}"  # what a CDN in front of the bucket would be
    s3 = s3_server.settings(bucket, prefix="cdn", public_base_url=public + "/")
    async with gateway(tmp_path, s3) as gw:
        response = await gw.generate("a red fox")
    assert response.status_code == 200
    url = response.json()["data"][0]["url"]
    assert url.startswith(f"{public}/cdn/")
    async with httpx.AsyncClient() as browser:
        fetched = await browser.get(url)
    assert fetched.status_code == 200
    assert fetched.content == _stored(s3_server, bucket, url.removeprefix(f"{public}/"))


def _generations(data: DataDir) -> list[tuple[object, ...]]:
    return data.rows(
        "SELECT g.prompt, g.outcome, g.error_code, count(i.id) FROM generations g "
        "LEFT JOIN images i ON i.generation_id = g.id GROUP BY g.id ORDER BY g.created_at"
    )


async def test_a_missing_bucket_is_a_503_and_not_ready(tmp_path: Path, s3_server: S3Server) -> None:
    async with gateway(tmp_path, s3_server.settings("imagegate-no-such-bucket")) as gw:
        ready = await gw.http.get("/readyz")
        assert ready.status_code == 503
        assert "imagegate-no-such-bucket" in ready.json()["checks"]["storage"]
        response = await gw.generate("a red fox", n=2)
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "storage_error"
        assert "imagegate-no-such-bucket" in error["message"]
        assert "test-secret-key" not in response.text
        assert _generations(gw.data) == [("a red fox", "failed", "storage_error", 0)]


async def test_a_store_that_goes_down_fails_writes_cleanly_and_recovers(
    tmp_path: Path,
) -> None:
    """A real outage: the S3 server process stops between two requests, then comes back."""
    server = S3Server(tmp_path / "moto.log").start()
    try:
        bucket = server.new_bucket()
        async with gateway(tmp_path, server.settings(bucket)) as gw:
            (before,) = _keys(await gw.generate("before the outage"))
            server.stop()
            response = await gw.generate("during the outage")
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "storage_error"
            assert (await gw.http.get("/readyz")).status_code == 503
            failed = await gw.http.get(f"/files/{before}")
            assert failed.status_code == 503
            server.start()  # same port, empty store: moto keeps nothing across restarts
            server.client().create_bucket(Bucket=bucket)
            (after,) = _keys(await gw.generate("during the outage"))
            assert (await gw.http.get(f"/files/{after}")).status_code == 200
            assert _generations(gw.data) == [
                ("before the outage", "generated", None, 1),
                ("during the outage", "failed", "storage_error", 0),
                ("during the outage", "generated", None, 1),
            ]
    finally:
        server.stop()
