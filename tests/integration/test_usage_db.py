"""The usage aggregate and the events page on SQLite and on PostgreSQL: same rows, same answers.

The rows straddle midnight UTC to the microsecond, and the PostgreSQL session runs in UTC+14,
so a day taken in the session's time zone, or rounded, would land in the wrong group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tests.support.generations import generation_row, record_generations

from imagegate.db.base import UsageGrouping, UsageTally
from imagegate.db.engine import create_engine, is_sqlite, upgrade_to_head
from imagegate.db.keys import SqlKeyRepository
from imagegate.db.usage import SqlUsageRepository
from imagegate.models import ApiKey, Generation, Outcome, Role, new_id
from imagegate.settings import DatabaseSettings

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 3, 3, tzinfo=UTC)
TICK = timedelta(microseconds=1)
MIDNIGHT = datetime(2026, 3, 2, tzinfo=UTC)


@dataclass(frozen=True)
class Seeded:
    usage: SqlUsageRepository
    alice: str
    bob: str
    rows: list[Generation]


def _engine(database_url: str) -> AsyncEngine:
    if is_sqlite(database_url):
        return create_engine(database_url, DatabaseSettings(url=database_url))
    far_east = {"server_settings": {"timezone": "Pacific/Kiritimati"}}  # UTC+14
    return create_async_engine(database_url, connect_args=far_east)


async def _user_with_key(engine: AsyncEngine, name: str) -> tuple[str, str]:
    keys = SqlKeyRepository(engine)
    user_id, _ = await keys.ensure_user(name, Role.USER)
    key = ApiKey(new_id(), user_id, name, Role.USER, f"{name}-key", f"ig_{name}"[:11], START)
    await keys.insert_key(key, new_id() + new_id(), webhook_secret="whsec_test")
    return user_id, key.id


@pytest.fixture
async def seeded(database_url: str) -> AsyncIterator[Seeded]:
    engine = _engine(database_url)
    await upgrade_to_head(engine)
    alice, alice_key = await _user_with_key(engine, "alice")
    bob, bob_key = await _user_with_key(engine, "bob")
    paid = {"model": "gpt-image-1", "provider": "openai"}
    imagen = {"model": "imagen-4", "provider": "google"}
    rows = [
        generation_row(alice, START - TICK, key_id=alice_key, cost=1, **paid),  # before
        generation_row(alice, START, key_id=alice_key, cost=10, **paid),  # first instant
        generation_row(alice, MIDNIGHT - TICK, key_id=alice_key, cost=40_000, n=2, **paid),
        generation_row(
            alice, MIDNIGHT, key_id=alice_key, outcome=Outcome.CACHE_HIT, saved=40_000, **paid
        ),
        generation_row(
            alice, MIDNIGHT + TICK, outcome=Outcome.COALESCED, n=2, saved=60_000, **imagen
        ),
        generation_row(alice, MIDNIGHT + timedelta(hours=10), outcome=Outcome.FAILED, **imagen),
        generation_row(bob, MIDNIGHT - timedelta(hours=1), key_id=bob_key, cost=3, provider=None),
        generation_row(bob, END - TICK, key_id=bob_key, cost=1_000_000, n=4, **paid),  # last
        generation_row(bob, END, key_id=bob_key, cost=7, **paid),  # after: to is excluded
    ]
    await record_generations(database_url, rows)
    try:
        yield Seeded(SqlUsageRepository(engine), alice, bob, rows)
    finally:
        await engine.dispose()


def tally(key: str | None = None, key_name: str | None = None, **figures: int) -> UsageTally:
    return UsageTally(key=key, key_name=key_name, **figures)


async def test_totals_per_user_and_for_everyone(seeded: Seeded) -> None:
    usage = seeded.usage
    alice = await usage.tally(user_id=seeded.alice, start=START, end=END, group_by=None)
    assert alice == [
        tally(
            requests=5, images=6, generated=2, cache_hit=1, coalesced=1, failed=1,
            spend_micro_usd=40_010, saved_micro_usd=100_000,
        )
    ]  # fmt: skip
    everyone = await usage.tally(user_id=None, start=START, end=END, group_by=None)
    assert everyone == [
        tally(
            requests=7, images=11, generated=4, cache_hit=1, coalesced=1, failed=1,
            spend_micro_usd=1_040_013, saved_micro_usd=100_000,
        )
    ]  # fmt: skip
    nothing = await usage.tally(user_id=seeded.alice, start=END, end=END, group_by=None)
    assert nothing == [tally()]


async def test_groups_on_each_database(seeded: Seeded) -> None:
    async def grouped(group_by: UsageGrouping) -> list[UsageTally]:
        return await seeded.usage.tally(user_id=None, start=START, end=END, group_by=group_by)

    assert await grouped(UsageGrouping.DAY) == [
        tally("2026-03-01", requests=3, images=4, generated=3, spend_micro_usd=40_013),
        tally(
            "2026-03-02", requests=4, images=7, generated=1, cache_hit=1, coalesced=1, failed=1,
            spend_micro_usd=1_000_000, saved_micro_usd=100_000,
        ),
    ]  # fmt: skip
    assert await grouped(UsageGrouping.MODEL) == [
        tally("builtin", requests=1, images=1, generated=1, spend_micro_usd=3),
        tally(
            "gpt-image-1", requests=4, images=8, generated=3, cache_hit=1,
            spend_micro_usd=1_040_010, saved_micro_usd=40_000,
        ),
        tally("imagen-4", requests=2, images=2, coalesced=1, failed=1, saved_micro_usd=60_000),
    ]  # fmt: skip
    assert [(t.key, t.requests) for t in await grouped(UsageGrouping.PROVIDER)] == [
        ("google", 2),
        ("openai", 4),
        (None, 1),
    ]
    assert [(t.key, t.key_name, t.requests) for t in await grouped(UsageGrouping.KEY)] == [
        ("ig_alice", "alice-key", 3),
        ("ig_bob", "bob-key", 2),
        (None, None, 2),
    ]


@pytest.mark.parametrize("group_by", [None, *UsageGrouping])
async def test_groups_partition_the_totals(seeded: Seeded, group_by: UsageGrouping | None) -> None:
    for user_id in (seeded.alice, seeded.bob, None):
        found = await seeded.usage.tally(user_id=user_id, start=START, end=END, group_by=group_by)
        in_period = [
            g for g in seeded.rows if START <= g.created_at < END and user_id in (None, g.user_id)
        ]
        assert sum(t.requests for t in found) == len(in_period)
        assert sum(t.spend_micro_usd for t in found) == sum(g.cost_micro_usd for g in in_period)
        assert sum(t.saved_micro_usd for t in found) == sum(
            g.saved_cost_micro_usd
            for g in in_period
            if g.outcome in (Outcome.CACHE_HIT, Outcome.COALESCED)
        )


async def test_find_user_by_id_or_name(seeded: Seeded) -> None:
    assert await seeded.usage.find_user("alice") == (seeded.alice, "alice")
    assert await seeded.usage.find_user(seeded.bob) == (seeded.bob, "bob")
    assert await seeded.usage.find_user("carol") is None


async def test_events_page_newest_first(seeded: Seeded) -> None:
    async def page(**filters: object) -> list[tuple[int, str]]:
        arguments: dict[str, object] = {
            "event_type": None, "generation_id": None, "start": None, "end": None,
            "before_id": None, "limit": 200, **filters,
        }  # fmt: skip
        return [(e.id, e.type) for e in await seeded.usage.events(**arguments)]  # type: ignore[arg-type]

    everything = await page()
    assert len(everything) == 2 * len(seeded.rows)
    ids = [i for i, _ in everything]
    assert ids == sorted(ids, reverse=True)
    assert await page(limit=5) == everything[:5]
    assert await page(limit=5, before_id=ids[4]) == everything[5:10]
    assert await page(event_type="generation_failed") == [
        (i, t) for i, t in everything if t == "generation_failed"
    ]
    failed = next(g for g in seeded.rows if g.outcome is Outcome.FAILED)
    assert [t for _, t in await page(generation_id=failed.id)] == [
        "generation_failed",
        "generation_started",
    ]
    # the half-open period, to the microsecond, whatever the stored spelling
    around_midnight = await page(start=MIDNIGHT - TICK, end=MIDNIGHT + TICK)
    assert len(around_midnight) == 4  # the two rows at 23:59:59.999999 and 00:00:00
    in_march = await seeded.usage.events(
        event_type=None, generation_id=None, start=START, end=END, before_id=None, limit=200
    )
    assert len(in_march) == 2 * 7
    assert all(START <= e.created_at < END for e in in_march)
    assert all(e.created_at.utcoffset() == timedelta(0) for e in in_march)
