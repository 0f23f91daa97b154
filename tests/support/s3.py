"""A real S3-compatible server on loopback (moto's server mode) and a plain client to look
inside its buckets, for the storage suites."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from imagegate.settings import S3Settings

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


class S3Server:
    """moto's S3 in a thread of the test process, on a free loopback port."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint_url = ""

    def start(self) -> S3Server:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def client(self) -> Any:
        """A boto3 client: what the tests check the bucket with, independent of imagegate."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def new_bucket(self) -> str:
        name = f"imagegate-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, bucket: str, **fields: Any) -> S3Settings:
        """Settings for ``bucket`` on this server (path-style: the endpoint is an address)."""
        return S3Settings(
            bucket=bucket,
            endpoint_url=self.endpoint_url,
            region=REGION,
            access_key_id=ACCESS_KEY,  # type: ignore[arg-type]
            secret_access_key=SECRET_KEY,  # type: ignore[arg-type]
            addressing_style="path",
            **fields,
        )

    def object_names(self, bucket: str) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))


class CuttingProxy:
    """A loopback TCP proxy in front of the S3 server that drops each connection once it has
    passed ``limit`` bytes upstream: an upload that dies part-way through its body."""

    def __init__(self, upstream_url: str, limit: int) -> None:
        host, _, port = upstream_url.removeprefix("http://").partition(":")
        self._upstream = (host, int(port))
        self._limit = limit
        self._server: asyncio.Server | None = None
        self.endpoint_url = ""

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.endpoint_url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        upstream_in, upstream_out = await asyncio.open_connection(*self._upstream)
        answers = asyncio.create_task(_pipe(upstream_in, client_out))
        sent = 0
        try:
            while sent < self._limit:
                chunk = await client_in.read(min(65536, self._limit - sent))
                if not chunk:
                    break
                upstream_out.write(chunk)
                await upstream_out.drain()
                sent += len(chunk)
        finally:
            answers.cancel()
            for writer in (upstream_out, client_out):
                writer.transport.abort()


async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    while chunk := await source.read(65536):
        target.write(chunk)
        await target.drain()
