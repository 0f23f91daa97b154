"""Job webhooks end to end: signed so the receiver can check them, retried after a failure,
refused for addresses imagegate must not call."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from tests.support.receivers import Receiver, answer, receiving

from imagegate.container import Services, build_services
from imagegate.errors import UnsafeUrl
from imagegate.models import GenerationRequest, JobStatus, Principal
from imagegate.queue.worker import Worker
from imagegate.services.jobs import JobOptions
from imagegate.services.keys import IssuedKey
from imagegate.settings import Settings

REQUEST = GenerationRequest(prompt="a kite", model="builtin", size="256x256")


def _settings(tmp_path: Path, allow_loopback: bool) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_url="http://img.test",
        outbound={"allowlist": ["127.0.0.1"] if allow_loopback else []},
        jobs={"poll_seconds": 0.05},
    )  # type: ignore[arg-type]


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with build_services(_settings(tmp_path, allow_loopback=True)) as built:
        yield built


async def _key(services: Services) -> tuple[IssuedKey, Principal]:
    issued = await services.keys.create("hooks")
    return issued, await services.keys.authenticate(f"Bearer {issued.secret}")


def _independent_check(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's side, written from the Standard Webhooks spec, not from imagegate."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return f"v1,{expected}" in headers["webhook-signature"].split()


async def _run_until(services: Services, receiver: Receiver, count: int, seconds: float) -> None:
    worker = Worker.for_services(services)
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(int(seconds / 0.05)):
            if len(receiver.requests) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{len(receiver.requests)} of {count} webhook calls arrived")
    finally:
        worker.stop()
        await running


async def test_start_and_completion_are_posted_signed_with_the_keys_secret(
    services: Services,
) -> None:
    issued, principal = await _key(services)
    async with receiving(answer(200)) as receiver:
        view = await services.jobs.submit(
            principal, REQUEST, JobOptions(webhook_url=receiver.url(), metadata={"post": 7})
        )
        await _run_until(services, receiver, 2, 10)
    started, completed = receiver.requests
    for call in receiver.requests:
        assert call.method == "POST"
        assert call.headers["content-type"] == "application/json"
        assert _independent_check(issued.webhook_secret, call.headers, call.body)
        assert not _independent_check("whsec_" + base64.b64encode(b"x" * 32).decode(),
                                      call.headers, call.body)  # fmt: skip
    assert started.headers["webhook-id"] != completed.headers["webhook-id"]
    assert orjson.loads(started.body)["type"] == "job.started"
    event = orjson.loads(completed.body)
    assert event["type"] == "job.succeeded"
    assert event["data"]["id"] == view.job.id
    assert event["data"]["status"] == "succeeded"
    assert event["data"]["metadata"] == {"post": 7}
    assert event["data"]["result"]["data"][0]["url"].startswith("http://img.test/files/")


async def test_a_failed_delivery_is_retried_with_the_same_id_and_every_attempt_is_logged(
    services: Services,
) -> None:
    _, principal = await _key(services)
    async with receiving(answer(500), answer(200)) as receiver:
        view = await services.jobs.submit(
            principal,
            REQUEST,
            JobOptions(webhook_url=receiver.url(), webhook_events=("completed",)),
        )
        await _run_until(services, receiver, 2, 20)  # the first retry waits 4 to 5 s
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert orjson.loads(second.body)["data"]["id"] == view.job.id
    attempts = await services.webhooks.attempts(view.job.id)
    assert attempts == [("job.succeeded", 1, 500, "HTTP 500"), ("job.succeeded", 2, 200, None)]


async def test_a_loopback_webhook_is_refused_unless_the_allowlist_names_it(
    tmp_path: Path,
) -> None:
    async with build_services(_settings(tmp_path, allow_loopback=False)) as services:
        _, principal = await _key(services)
        with pytest.raises(UnsafeUrl) as refused:
            await services.jobs.submit(
                principal, REQUEST, JobOptions(webhook_url="http://127.0.0.1:9/hook")
            )
        assert refused.value.param == "webhook"
        with pytest.raises(UnsafeUrl):
            await services.jobs.submit(
                principal, REQUEST, JobOptions(webhook_url="http://169.254.169.254/latest")
            )
        page = await services.jobs.page(principal, JobStatus.QUEUED, 10, None)
        assert page == ([], None)  # nothing was queued
