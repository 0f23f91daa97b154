"""SqlIdempotencyRepository on SQLite and on PostgreSQL: claims are atomic, even when racing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imagegate.container import build_services
from imagegate.db.base import IdempotencyRecord
from imagegate.db.engine import create_engine
from imagegate.db.idempotency import SqlIdempotencyRepository
from imagegate.settings import DatabaseSettings, Settings

DAY = timedelta(days=1)
HEADERS = (("content-type", "application/json"), ("x-imagegate-generation-id", "g1"))
BODY = b'{"data": []}\x00\xff binary-safe'


@pytest.fixture
async def repo(tmp_path: Path, database_url: str) -> AsyncIterator[SqlIdempotencyRepository]:
    settings = Settings(
        data_dir=tmp_path / "data",
        public_url="http://img.test",
        database=DatabaseSettings(url=database_url),
    )
    async with build_services(settings):  # migrates the database
        pass
    engine = create_engine(database_url, settings.database)
    try:
        yield SqlIdempotencyRepository(engine)
    finally:
        await engine.dispose()


async def _claim(
    repo: SqlIdempotencyRepository,
    request_hash: str,
    at: datetime,
    *,
    key: str = "k",
    user_id: str = "u1",
    ttl: timedelta = DAY,
    abandon: timedelta = DAY,
) -> IdempotencyRecord | None:
    expires_at, abandoned_before = at + ttl, at - abandon
    return await repo.claim(user_id, key, request_hash, at, expires_at, abandoned_before)


async def test_claim_complete_and_read_back(repo: SqlIdempotencyRepository) -> None:
    now = datetime.now(UTC)
    assert await _claim(repo, "h1", now) is None

    running = await _claim(repo, "h2", now)
    assert running is not None
    assert (running.request_hash, running.status) == ("h1", None)
    assert running.claimed_at == now

    await repo.complete("u1", "k", now, 201, HEADERS, BODY)
    done = await repo.read("u1", "k", datetime.now(UTC))
    assert done == IdempotencyRecord("h1", now, 201, HEADERS, BODY)
    assert await _claim(repo, "h1", datetime.now(UTC)) == done


async def test_keys_are_per_user(repo: SqlIdempotencyRepository) -> None:
    now = datetime.now(UTC)
    assert await _claim(repo, "h", now, user_id="u1") is None
    assert await _claim(repo, "h", now, user_id="u2") is None
    assert await _claim(repo, "h", now, user_id="u1", key="other") is None


async def test_racing_claims_have_exactly_one_winner(repo: SqlIdempotencyRepository) -> None:
    now = datetime.now(UTC)
    results = await asyncio.gather(*(_claim(repo, f"h{i}", now) for i in range(20)))

    winners = [i for i, held in enumerate(results) if held is None]
    assert len(winners) == 1
    assert {held.request_hash for held in results if held is not None} == {f"h{winners[0]}"}


async def test_an_expired_key_is_taken_over_once_and_its_old_owner_is_fenced_off(
    repo: SqlIdempotencyRepository,
) -> None:
    then = datetime.now(UTC) - timedelta(hours=2)
    assert await _claim(repo, "old", then, ttl=timedelta(hours=1)) is None

    now = datetime.now(UTC)
    results = await asyncio.gather(*(_claim(repo, f"new{i}", now) for i in range(10)))
    assert sum(held is None for held in results) == 1

    # the first owner finishing late neither overwrites nor frees the new claim
    await repo.complete("u1", "k", then, 200, (), b"stale")
    await repo.delete("u1", "k", then)
    current = await repo.read("u1", "k", datetime.now(UTC))
    assert current is not None
    assert (current.status, current.claimed_at) == (None, now)
    assert current.request_hash.startswith("new")


async def test_a_running_claim_is_abandoned_after_its_time_but_a_done_one_is_not(
    repo: SqlIdempotencyRepository,
) -> None:
    then = datetime.now(UTC) - timedelta(minutes=20)
    await _claim(repo, "h", then, key="running")
    await _claim(repo, "h", then, key="done")
    await repo.complete("u1", "done", then, 200, HEADERS, BODY)

    now = datetime.now(UTC)
    ten_minutes = timedelta(minutes=10)
    assert await _claim(repo, "h", now, key="running", abandon=ten_minutes) is None
    kept = await _claim(repo, "h", now, key="done", abandon=ten_minutes)
    assert kept is not None
    assert kept.status == 200


async def test_read_delete_and_purge(repo: SqlIdempotencyRepository) -> None:
    now = datetime.now(UTC)
    await _claim(repo, "h", now - timedelta(hours=2), key="expired", ttl=timedelta(hours=1))
    await _claim(repo, "h", now, key="live")
    await _claim(repo, "h", now, key="freed")

    assert await repo.read("u1", "expired", now) is None  # expired counts as absent
    await repo.delete("u1", "freed", now)
    assert await repo.read("u1", "freed", now) is None

    assert await repo.purge_expired(now) == 1
    assert await repo.purge_expired(now) == 0
    assert await repo.read("u1", "live", now) is not None
