"""A real S3-compatible server on loopback (moto's server mode, in its own process), a plain
client to look inside its buckets, and a proxy that cuts uploads short."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx
from tests.support.processes import free_port

from imagegate.settings import S3Settings

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


class S3Server:
    """``moto_server`` (S3-compatible, in memory) as its own process on a loopback port.

    A separate process, so ``stop()`` is a real outage: connections are refused, and the
    gateway's pooled ones die with it. ``start()`` again on the same port is a restart with an
    empty store (moto keeps everything in memory)."""

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto_server exited early:\n{self._log.read_text()}")
            try:
                httpx.get(self.endpoint_url, timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not start:\n{self._log.read_text()}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

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

    def allow_public_reads(self, bucket: str) -> None:
        """The bucket policy a public bucket or a CDN origin would have."""
        statement = {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
        }
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        self.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))

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
