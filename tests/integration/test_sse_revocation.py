"""An open job event stream ends within seconds when its key is revoked or expired from another
process (a real ``imagegate serve`` on loopback; the CLI does the revoking)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from tests.support.processes import ServerProcess, run_cli

JOB = {"model": "builtin", "prompt": "a slow boat", "size": "256x256"}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[ServerProcess]:
    # no workers: the job stays queued, so the stream would stay open for ever
    server = ServerProcess(tmp_path / "data", env={"IMAGEGATE_JOBS__EMBEDDED_WORKERS": "false"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("refuse", "code"),
    [
        (("keys", "revoke", "{prefix}"), "invalid_api_key"),
        (("keys", "update", "{prefix}", "--expires-at", "2001-01-01"), "api_key_expired"),
    ],
)
async def test_an_open_stream_closes_within_seconds_of_refusal(
    gateway: ServerProcess, refuse: tuple[str, ...], code: str
) -> None:
    created = run_cli("keys", "create", "--name", "watcher", data_dir=gateway.data_dir)
    secret = created.stdout.strip()
    auth = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        job = (await client.post("/v1/jobs", json=JOB, headers=auth)).json()
        async with client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=auth) as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == "event: queued"
            args = [arg.format(prefix=secret[:11]) for arg in refuse]
            done = await asyncio.to_thread(run_cli, *args, data_dir=gateway.data_dir)
            assert done.returncode == 0, done.stderr
            refused_at = time.monotonic()
            rest: list[str] = []
            async with asyncio.timeout(20):  # the server must end the stream, not us
                rest = [line async for line in lines]
            closed_after = time.monotonic() - refused_at
    assert "event: error" in rest
    error = orjson.loads(rest[rest.index("event: error") + 1].removeprefix("data: "))
    assert error["error"]["code"] == code
    assert secret not in "\n".join(rest)
    assert closed_after < 15  # auth cache (5 s) + one keep-alive period (5 s), with slack
