"""In-flight claims against a leader finishing at the same moment, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Connection
from tests.support.generations import generation_row, record_generations

from imagegate.db.engine import AsyncTransactions, create_engine, upgrade_to_head
from imagegate.db.flights import SqlFlightRepository, release_flight
from imagegate.db.keys import SqlKeyRepository
from imagegate.db.tables import cache_entries
from imagegate.models import ClaimOutcome, Role
from imagegate.settings import DatabaseSettings

SCOPE, KEY = "global", "f" * 64


async def test_a_claim_that_waits_on_the_leaders_commit_finds_its_cache_entry(
    database_url: str,
) -> None:
    """Two gateways: the leader's record transaction ends its claim and writes the cache entry;
    a request on the other gateway claiming at that moment must be answered from that entry,
    not become a second leader (a second upstream call for one prompt)."""
    engine = create_engine(database_url, DatabaseSettings(url=database_url))
    try:
        await upgrade_to_head(engine)
        user_id, _ = await SqlKeyRepository(engine).ensure_user("user-a", Role.USER)
        made = generation_row(user_id, datetime.now(UTC))
        await record_generations(database_url, [made])
        flights = SqlFlightRepository(engine, AsyncTransactions(engine).run)
        since = datetime.now(UTC)
        expiry = since + timedelta(seconds=60)
        assert await flights.claim(SCOPE, KEY, "leader", expiry, since) is ClaimOutcome.CLAIMED

        def finish(conn: Connection) -> None:  # what the leader's record transaction does
            release_flight(conn, SCOPE, KEY, "leader")
            conn.execute(
                cache_entries.insert().values(
                    scope=SCOPE, cache_key=KEY, generation_id=made.id, created_at=since
                )
            )

        async with engine.begin() as leader:
            await leader.run_sync(finish)
            other = asyncio.create_task(flights.claim(SCOPE, KEY, "other", expiry, since))
            await asyncio.sleep(0.5)  # the other claim now waits on the leader's rows or lock
        assert await asyncio.wait_for(other, 30) is ClaimOutcome.CACHED
        assert await flights.state(SCOPE, KEY) is None  # and it left no claim behind
    finally:
        await engine.dispose()
