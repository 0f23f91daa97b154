"""Generation rows with chosen outcomes, costs and times, written by the real repository.

The builtin model costs nothing and a real request is always "now", so tests of money and of
periods record their rows directly, exactly as the service would.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from imagegate.db.engine import AsyncTransactions, create_engine
from imagegate.db.generations import SqlGenerationRepository
from imagegate.models import Event, Generation, Outcome, new_id
from imagegate.settings import DatabaseSettings


def generation_row(
    user_id: str,
    at: datetime,
    *,
    key_id: str | None = None,
    outcome: Outcome = Outcome.GENERATED,
    model: str = "builtin",
    provider: str | None = "builtin",
    n: int = 1,
    cost: int = 0,
    saved: int = 0,
) -> Generation:
    """A finished generation created at ``at``, with its two telemetry events."""
    final = "generation_failed" if outcome is Outcome.FAILED else "generation_completed"
    return Generation(
        id=new_id(),
        user_id=user_id,
        key_id=key_id,
        model=model,
        provider=provider,
        upstream_model=model,
        prompt=f"seeded {outcome.value}",
        n=n,
        params={},
        cache_key=new_id(),
        outcome=outcome,
        attempts=0 if outcome in (Outcome.CACHE_HIT, Outcome.COALESCED) else 1,
        latency_ms=5,
        estimated_cost_micro_usd=cost,
        cost_micro_usd=cost,
        created_at=at,
        completed_at=at,
        saved_cost_micro_usd=saved,
        events=(Event("generation_started", at, {"n": n}), Event(final, at, {})),
    )


async def record_generations(database_url: str, rows: Iterable[Generation]) -> None:
    """Write ``rows`` through ``SqlGenerationRepository`` into an already migrated database."""
    engine = create_engine(database_url, DatabaseSettings(url=database_url))
    repository = SqlGenerationRepository(engine, AsyncTransactions(engine).run)
    try:
        for row in rows:
            await repository.record(row)
    finally:
        await repository.aclose()
        await engine.dispose()
