"""Generation records: one transaction per generation, many generations per commit.

``record()`` returns only once its rows are committed, so a client never sees a result the
database does not hold. Concurrent callers share commits ("group commit"): one writer task
drains everything waiting and writes it in a single transaction, which keeps SQLite's single
writer busy with useful work instead of lock hand-offs. If a shared commit fails, each record is
retried alone so one bad row cannot fail its neighbours; if the database cannot be reached,
every waiter gets ``DatabaseUnavailable`` at once. A generation's budget settlement is part of
its transaction: recorded and paid for together, or neither.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.budgets import settle_reservations
from imagegate.db.engine import TransactionRunner, insert_rows
from imagegate.db.flights import release_flights
from imagegate.db.job_results import finish_succeeded
from imagegate.db.tables import cache_entries, events, generations, images
from imagegate.errors import DatabaseUnavailable, ImagegateError, Unavailable
from imagegate.models import (
    Attempt,
    BudgetSettlement,
    CacheEntry,
    Event,
    FlightClaim,
    Generation,
    JobLink,
    Outcome,
    StoredImage,
    new_id,
)

MAX_BATCH = 256


@dataclass(frozen=True, slots=True)
class _Pending:
    generation: Generation
    cache_entry: CacheEntry | None
    flight: FlightClaim | None
    job: JobLink | None
    settlement: BudgetSettlement | None
    done: asyncio.Future[None]


def _generation_row(g: Generation) -> dict[str, Any]:
    return {
        "id": g.id,
        "user_id": g.user_id,
        "api_key_id": g.key_id,
        "model": g.model,
        "provider": g.provider,
        "upstream_model": g.upstream_model,
        "prompt": g.prompt,
        "params": g.params,
        "cache_key": g.cache_key,
        "outcome": g.outcome.value,
        "n": g.n,
        "attempts": g.attempts,
        "attempt_log": [
            {"target": a.target, "outcome": a.outcome, "latency_ms": a.latency_ms, "error": a.error}
            for a in g.attempt_log
        ],
        "latency_ms": g.latency_ms,
        "estimated_cost_micro_usd": g.estimated_cost_micro_usd,
        "cost_micro_usd": g.cost_micro_usd,
        "saved_cost_micro_usd": g.saved_cost_micro_usd,
        "error_code": g.error_code,
        "error_message": g.error_message,
        "created_at": g.created_at,
        "completed_at": g.completed_at,
        "source_generation_id": g.source_generation_id,
        "enhanced_prompt": g.enhanced_prompt,
    }


def _image_rows(g: Generation) -> list[dict[str, Any]]:
    return [
        {
            "id": new_id(),
            "generation_id": g.id,
            "position": position,
            "content_hash": image.content_hash,
            "storage_key": image.storage_key,
            "mime": image.mime,
            "width": image.width,
            "height": image.height,
            "byte_size": image.byte_size,
            "revised_prompt": image.revised_prompt,
            "created_at": g.completed_at,
            "user_id": g.user_id,
            "model": g.model,
            "provider": g.provider,
            "outcome": g.outcome.value,
            "thumbnail_key": image.thumbnail_key,
            "placeholder": image.placeholder,
        }
        for position, image in enumerate(g.images)
    ]


def _event_rows(g: Generation) -> list[dict[str, Any]]:
    return [
        {"generation_id": g.id, "type": e.type, "data": e.data, "created_at": e.at}
        for e in g.events
    ]


def _insert(conn: Connection, batch: list[_Pending]) -> None:
    records = [p.generation for p in batch]
    insert_rows(conn, generations, [_generation_row(g) for g in records])
    insert_rows(conn, images, [row for g in records for row in _image_rows(g)])
    insert_rows(conn, events, [row for g in records for row in _event_rows(g)])
    release_flights(
        conn,
        [(f.scope, f.cache_key, f.owner) for p in batch if (f := p.flight) is not None],
    )
    finish_succeeded(
        conn,
        [(p.job, p.generation.id, p.generation.completed_at) for p in batch if p.job is not None],
    )
    settle_reservations(conn, [p.settlement for p in batch if p.settlement is not None])
    entries = {  # the newest entry per key wins within a batch
        (p.cache_entry.scope, p.cache_entry.cache_key): (p.cache_entry, p.generation)
        for p in batch
        if p.cache_entry is not None
    }
    rows = [
        {
            "scope": entry.scope,
            "cache_key": entry.cache_key,
            "generation_id": generation.id,
            "created_at": generation.completed_at,
            "expires_at": entry.expires_at,
        }
        for entry, generation in entries.values()
    ]
    if conn.dialect.name == "sqlite":  # the same replacement, in one statement
        insert_rows(conn, cache_entries, rows, replace=True)
        return
    for scope, key in entries:
        conn.execute(
            cache_entries.delete().where(
                cache_entries.c.scope == scope, cache_entries.c.cache_key == key
            )
        )
    insert_rows(conn, cache_entries, rows)


def _answer(pending: _Pending, error: BaseException | None) -> None:
    if pending.done.done():  # its caller was canceled
        return
    if error is None:
        pending.done.set_result(None)
    else:
        pending.done.set_exception(error)


class SqlGenerationRepository:
    """``writes`` runs each batch's transaction (see ``engine.TransactionRunner``); reads use
    the async ``engine``."""

    def __init__(self, engine: AsyncEngine, writes: TransactionRunner) -> None:
        self._engine = engine
        self._writes = writes
        self._pending: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def record(
        self,
        generation: Generation,
        cache_entry: CacheEntry | None = None,
        flight: FlightClaim | None = None,
        job: JobLink | None = None,
        settlement: BudgetSettlement | None = None,
    ) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait(_Pending(generation, cache_entry, flight, job, settlement, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever(), name="generation-writer")
        await done

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while len(batch) < MAX_BATCH and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[_Pending]) -> None:
        """Write ``batch``; every waiter is answered, whatever happens (the writer never dies
        and leaves its callers waiting)."""
        try:
            await self._writes(lambda conn: _insert(conn, batch))
        except DatabaseUnavailable as exc:
            # each record alone would fail the same way, each after its own connect timeout
            for pending in batch:
                _answer(pending, DatabaseUnavailable(exc.message, retry_after=exc.retry_after))
            return
        except Exception as exc:
            if len(batch) > 1:
                for one in batch:
                    await self._write([one])
                return
            if not isinstance(exc, ImagegateError):
                exc = Unavailable(f"could not record generation: {type(exc).__name__}")
            _answer(batch[0], exc)
            return
        for pending in batch:
            _answer(pending, None)

    async def aclose(self) -> None:
        """Finish writing what is queued, then stop the writer."""
        while not self._pending.empty():
            batch: list[_Pending] = []
            while not self._pending.empty() and len(batch) < MAX_BATCH:
                batch.append(self._pending.get_nowait())
            await self._write(batch)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def get(self, generation_id: str) -> Generation | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(generations).where(generations.c.id == generation_id))
            ).first()
            if row is None:
                return None
            image_rows = await conn.execute(
                sa.select(images)
                .where(images.c.generation_id == generation_id)
                .order_by(images.c.position)
            )
            event_rows = await conn.execute(
                sa.select(events)
                .where(events.c.generation_id == generation_id)
                .order_by(events.c.id)
            )
            return _to_generation(row, list(image_rows), list(event_rows))


def _to_generation(
    row: sa.Row[Any], image_rows: list[sa.Row[Any]], event_rows: list[sa.Row[Any]]
) -> Generation:
    m = row._mapping
    return Generation(
        id=m["id"],
        user_id=m["user_id"],
        key_id=m["api_key_id"],
        model=m["model"],
        provider=m["provider"],
        upstream_model=m["upstream_model"],
        prompt=m["prompt"],
        n=m["n"],
        params=m["params"],
        cache_key=m["cache_key"],
        outcome=Outcome(m["outcome"]),
        attempts=m["attempts"],
        latency_ms=m["latency_ms"],
        estimated_cost_micro_usd=m["estimated_cost_micro_usd"],
        cost_micro_usd=m["cost_micro_usd"],
        created_at=m["created_at"],
        completed_at=m["completed_at"],
        error_code=m["error_code"],
        error_message=m["error_message"],
        images=tuple(
            StoredImage(
                content_hash=i.content_hash,
                storage_key=i.storage_key,
                mime=i.mime,
                width=i.width,
                height=i.height,
                byte_size=i.byte_size,
                revised_prompt=i.revised_prompt,
                thumbnail_key=i.thumbnail_key,
                placeholder=i.placeholder,
            )
            for i in image_rows
        ),
        events=tuple(Event(type=e.type, at=e.created_at, data=e.data) for e in event_rows),
        attempt_log=tuple(Attempt(**entry) for entry in m["attempt_log"]),
        saved_cost_micro_usd=m["saved_cost_micro_usd"],
        source_generation_id=m["source_generation_id"],
        enhanced_prompt=m["enhanced_prompt"],
    )
