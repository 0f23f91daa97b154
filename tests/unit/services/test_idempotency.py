"""IdempotencyService on its real SQL repository (SQLite): what is stored, replayed, waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.container import Services
from imagegate.db.engine import create_engine
from imagegate.db.idempotency import SqlIdempotencyRepository
from imagegate.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from imagegate.models import Principal, Role
from imagegate.services.idempotency import IdempotencyService, StoredResponse, fingerprint_of
from imagegate.settings import Settings

ALICE = Principal(user_id="u-alice", user_name="alice", role=Role.USER)
OK = StoredResponse(200, (("content-type", "application/json"),), b'{"ok":true}')
FINGERPRINT = fingerprint_of("POST", "/v1/images/generations", b"{}")


@pytest.fixture
async def engine(services: Services, settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the database ``services`` migrated."""
    engine = create_engine(settings.database_url, settings.database)
    yield engine
    await engine.dispose()


def _service(engine: AsyncEngine, **options: float) -> IdempotencyService:
    return IdempotencyService(SqlIdempotencyRepository(engine), poll_seconds=0.01, **options)


class Producer:
    """Answers with the given responses in turn, counting calls; may wait for a go-ahead."""

    def __init__(self, *responses: StoredResponse, gate: asyncio.Event | None = None) -> None:
        self.responses = list(responses)
        self.calls = 0
        self.started = asyncio.Event()
        self.gate = gate

    async def __call__(self) -> StoredResponse:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return self.responses.pop(0)


async def test_a_new_key_runs_and_a_repeat_replays_with_the_marker(engine: AsyncEngine) -> None:
    service = _service(engine)
    produce = Producer(OK)

    first = await service.run(ALICE, "k", FINGERPRINT, produce)
    second = await service.run(ALICE, "k", FINGERPRINT, produce)

    assert first == OK
    assert (second.status, second.body) == (OK.status, OK.body)
    assert second.headers == (*OK.headers, ("Idempotent-Replayed", "true"))
    assert produce.calls == 1


@pytest.mark.parametrize("status", [500, 503, 429, 408])
async def test_answers_that_say_try_again_are_not_stored(engine: AsyncEngine, status: int) -> None:
    service = _service(engine)
    produce = Producer(StoredResponse(status, (("retry-after", "1"),), b"later"), OK)

    assert (await service.run(ALICE, "k", FINGERPRINT, produce)).status == status
    assert await service.run(ALICE, "k", FINGERPRINT, produce) == OK
    assert produce.calls == 2


@pytest.mark.parametrize("status", [400, 404, 413, 422])
async def test_client_errors_are_final_and_replayed(engine: AsyncEngine, status: int) -> None:
    service = _service(engine)
    refusal = StoredResponse(status, (), b"no")
    produce = Producer(refusal, OK)

    assert await service.run(ALICE, "k", FINGERPRINT, produce) == refusal
    assert (await service.run(ALICE, "k", FINGERPRINT, produce)).status == status
    assert produce.calls == 1


async def test_an_exception_frees_the_key_and_is_raised(engine: AsyncEngine) -> None:
    service = _service(engine)

    async def broken() -> StoredResponse:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        await service.run(ALICE, "k", FINGERPRINT, broken)
    assert await service.run(ALICE, "k", FINGERPRINT, Producer(OK)) == OK


async def test_a_cancelled_request_frees_the_key(engine: AsyncEngine) -> None:
    service = _service(engine)
    hanging = Producer(OK, gate=asyncio.Event())
    task = asyncio.create_task(service.run(ALICE, "k", FINGERPRINT, hanging))
    await hanging.started.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await _service(engine, wait_seconds=5).run(ALICE, "k", FINGERPRINT, Producer(OK)) == OK


async def test_a_retry_waits_for_the_running_first_request(engine: AsyncEngine) -> None:
    service = _service(engine)
    gate = asyncio.Event()
    first_produce, second_produce = Producer(OK, gate=gate), Producer(OK)
    first = asyncio.create_task(service.run(ALICE, "k", FINGERPRINT, first_produce))
    await first_produce.started.wait()
    second = asyncio.create_task(service.run(ALICE, "k", FINGERPRINT, second_produce))
    await asyncio.sleep(0.05)
    assert not second.done()

    gate.set()

    assert (await second).body == (await first).body
    assert second_produce.calls == 0


async def test_a_waiter_runs_the_request_itself_when_the_first_fails(engine: AsyncEngine) -> None:
    service = _service(engine)
    gate = asyncio.Event()
    failing = Producer(StoredResponse(502, (), b"upstream"), gate=gate)
    first = asyncio.create_task(service.run(ALICE, "k", FINGERPRINT, failing))
    await failing.started.wait()
    second = asyncio.create_task(service.run(ALICE, "k", FINGERPRINT, Producer(OK)))
    await asyncio.sleep(0.05)

    gate.set()

    assert (await first).status == 502
    assert await second == OK


async def test_a_waiter_gives_up_with_a_409_and_retry_after(engine: AsyncEngine) -> None:
    service = _service(engine, wait_seconds=0.1)
    gate = asyncio.Event()
    slow = Producer(OK, gate=gate)
    first = asyncio.create_task(service.run(ALICE, "k", FINGERPRINT, slow))
    await slow.started.wait()

    with pytest.raises(IdempotencyKeyInUse) as caught:
        await service.run(ALICE, "k", FINGERPRINT, Producer(OK))

    assert (caught.value.status, caught.value.param) == (409, "Idempotency-Key")
    assert caught.value.retry_after is not None
    gate.set()
    assert await first == OK


async def test_another_request_with_a_running_key_is_refused_at_once(engine: AsyncEngine) -> None:
    service = _service(engine)
    gate = asyncio.Event()
    slow = Producer(OK, gate=gate)
    first = asyncio.create_task(service.run(ALICE, "k", FINGERPRINT, slow))
    await slow.started.wait()

    other = fingerprint_of("POST", "/v1/images/generations", b'{"prompt": "x"}')
    with pytest.raises(IdempotencyKeyReused) as caught:
        await service.run(ALICE, "k", other, Producer(OK))

    assert (caught.value.status, caught.value.code) == (422, "idempotency_key_reused")
    gate.set()
    await first


async def test_a_claim_left_running_by_a_dead_process_is_taken_over(engine: AsyncEngine) -> None:
    long_ago = datetime.now(UTC) - timedelta(minutes=30)
    await SqlIdempotencyRepository(engine).claim(
        ALICE.user_id,
        "k",
        FINGERPRINT,
        claimed_at=long_ago,
        expires_at=long_ago + timedelta(days=1),
        abandoned_before=long_ago,
    )

    produce = Producer(OK)
    assert await _service(engine, abandon_seconds=600).run(ALICE, "k", FINGERPRINT, produce) == OK
    assert produce.calls == 1


async def test_purge_removes_only_expired_keys(engine: AsyncEngine) -> None:
    await _service(engine, ttl_seconds=0).run(ALICE, "old", FINGERPRINT, Producer(OK))
    await _service(engine).run(ALICE, "new", FINGERPRINT, Producer(OK))
    await asyncio.sleep(0.01)

    assert await _service(engine).purge_expired() == 1
    replay = await _service(engine).run(ALICE, "new", FINGERPRINT, Producer(OK))
    assert ("Idempotent-Replayed", "true") in replay.headers


def test_the_fingerprint_covers_method_path_and_body() -> None:
    base = fingerprint_of("POST", "/v1/images/generations", b"{}")
    assert base == fingerprint_of("post", "/v1/images/generations", b"{}")
    assert base != fingerprint_of("PUT", "/v1/images/generations", b"{}")
    assert base != fingerprint_of("POST", "/v1/images/edits", b"{}")
    assert base != fingerprint_of("POST", "/v1/images/generations", b"{} ")
    # the separator keeps the path and the body apart
    assert fingerprint_of("POST", "/a", b"b") != fingerprint_of("POST", "/ab", b"")
