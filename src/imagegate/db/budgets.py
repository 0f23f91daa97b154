"""Budgets and quotas in SQL: counters per (subject, window) changed by conditional updates.

A reservation adds the estimate to ``reserved`` (and ``n`` to ``images``) only if the result
stays within the limit, in one statement per counter: atomic on PostgreSQL (row lock) and on
SQLite (one writer), so concurrent requests can never pass a limit together. All counters of
one request change in one transaction: either every limit admits it or none is touched.
Settling moves the estimate out of ``reserved`` and the actual cost into ``spent``; releasing
(failure, cancellation) only takes the reservation back. Every change leaves a ledger row.

Each reservation is also a row (``budget_reservations``) with an expiry, deleted when it is
settled: the holds of a process that died mid-request are given back by ``release_expired``
(``expire`` in the ledger) instead of blocking the budget until the period ends. A request that
settles after its hold was swept only adds what it spent. A generation's settlement is written
in the transaction that records it (``settle_reservations``): whatever the moment a process is
killed, the spent counters agree with the generations table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.engine import TransactionRunner, insert_or_nothing
from imagegate.db.tables import budget_counters, budget_ledger, budget_reservations
from imagegate.errors import BudgetExceeded, QuotaExceeded, RateLimited
from imagegate.models import BudgetCounter, BudgetSettlement


def _match(counter: BudgetCounter) -> sa.ColumnElement[bool]:
    return sa.and_(
        budget_counters.c.subject == counter.subject,
        budget_counters.c.window == counter.window,
        budget_counters.c.window_start == counter.window_start,
    )


def _ensure_row(conn: Connection, counter: BudgetCounter) -> None:
    conn.execute(
        insert_or_nothing(budget_counters, conn.dialect).values(
            subject=counter.subject, window=counter.window, window_start=counter.window_start
        )
    )


def _ledger_rows(
    counters: Sequence[BudgetCounter], kind: str, micro_usd: int, images: int
) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return [
        {"subject": subject, "kind": kind, "micro_usd": micro_usd, "images": images,
         "created_at": now}
        for subject in sorted({c.subject for c in counters})
    ]  # fmt: skip


def _ledger(
    conn: Connection, counters: Sequence[BudgetCounter], kind: str, micro_usd: int, images: int
) -> None:
    conn.execute(budget_ledger.insert(), _ledger_rows(counters, kind, micro_usd, images))


def settle_reservations(conn: Connection, settlements: Sequence[BudgetSettlement]) -> None:
    """Settle ``settlements`` inside the caller's transaction (``db/generations.py`` settles
    each generation's reservation with its record).

    A reservation already swept as expired only adds what was spent and made: its hold was
    given back then. The counters change in one sorted order, so that concurrent transactions
    lock them in the same order and do not deadlock each other."""
    if not settlements:
        return
    r = budget_reservations.c
    ids = [s.reservation_id for s in settlements]
    deleted = conn.execute(budget_reservations.delete().where(r.id.in_(ids)).returning(r.id))
    held = {row.id for row in deleted}
    changes: dict[tuple[str, str, datetime], list[int]] = {}
    for s in settlements:
        hold_usd, hold_images = (
            (s.reserved_micro_usd, s.reserved_images) if s.reservation_id in held else (0, 0)
        )
        for counter in s.counters:
            change = changes.setdefault(
                (counter.subject, counter.window, counter.window_start), [0, 0, 0]
            )
            change[0] -= hold_usd
            change[1] += s.spent_micro_usd
            change[2] += s.made_images - hold_images
    c = budget_counters.c
    for (subject, window, start), (reserved, spent, images) in sorted(changes.items()):
        conn.execute(
            budget_counters.update()
            .where(c.subject == subject, c.window == window, c.window_start == start)
            .values(
                reserved_micro_usd=c.reserved_micro_usd + reserved,
                spent_micro_usd=c.spent_micro_usd + spent,
                images=c.images + images,
            )
        )
    rows = [
        row
        for s in settlements
        for row in _ledger_rows(
            s.counters,
            "settle" if s.made_images or s.spent_micro_usd else "release",
            s.spent_micro_usd,
            s.made_images,
        )
    ]
    if rows:
        conn.execute(budget_ledger.insert(), rows)


def _refusal(counter: BudgetCounter, over_money: bool) -> RateLimited:
    """The 429 for a counter that would pass its limit (the transaction is rolled back)."""
    wait = max(1.0, (counter.resets_at - datetime.now(UTC)).total_seconds())
    who = counter.subject.partition(":")[0]  # "key" or "user"
    resets = counter.resets_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if over_money:
        limit = (counter.micro_usd_limit or 0) / 1_000_000
        return BudgetExceeded(
            f"This request would pass the {who}'s {counter.window} budget of ${limit:.2f} "
            f"(it resets at {resets}).",
            retry_after=wait,
        )
    return QuotaExceeded(
        f"The {who}'s quota of {counter.images_limit} images per {counter.window} is used up "
        f"(it resets at {resets}).",
        retry_after=wait,
    )


class SqlBudgetRepository:
    def __init__(self, engine: AsyncEngine, writes: TransactionRunner) -> None:
        self._engine = engine
        self._writes = writes

    async def levels(self, counters: Sequence[BudgetCounter]) -> list[tuple[int, int, int]]:
        """``(spent, reserved, images)`` of each counter, zeros where nothing happened yet."""
        levels = []
        async with self._engine.connect() as conn:
            for counter in counters:
                row = (
                    await conn.execute(sa.select(budget_counters).where(_match(counter)))
                ).first()
                levels.append(
                    (row.spent_micro_usd, row.reserved_micro_usd, row.images) if row else (0, 0, 0)
                )
        return levels

    async def reserve(
        self,
        reservation_id: str,
        counters: Sequence[BudgetCounter],
        micro_usd: int,
        images: int,
        expires_at: datetime,
    ) -> None:
        """Reserve on every counter, or raise ``BudgetExceeded``/``QuotaExceeded`` having
        changed nothing."""

        def work(conn: Connection) -> None:
            c = budget_counters.c
            for counter in counters:
                _ensure_row(conn, counter)
                within = [_match(counter)]
                if counter.micro_usd_limit is not None:
                    total = c.spent_micro_usd + c.reserved_micro_usd + micro_usd
                    within.append(total <= counter.micro_usd_limit)
                if counter.images_limit is not None:
                    within.append(c.images + images <= counter.images_limit)
                updated = conn.execute(
                    budget_counters.update()
                    .where(*within)
                    .values(
                        reserved_micro_usd=c.reserved_micro_usd + micro_usd,
                        images=c.images + images,
                    )
                )
                if not updated.rowcount:
                    row = conn.execute(sa.select(budget_counters).where(_match(counter))).one()
                    over_money = counter.micro_usd_limit is not None and (
                        row.spent_micro_usd + row.reserved_micro_usd + micro_usd
                        > counter.micro_usd_limit
                    )
                    raise _refusal(counter, over_money)
            conn.execute(
                budget_reservations.insert().values(
                    id=reservation_id,
                    counters=[_counter_document(counter) for counter in counters],
                    micro_usd=micro_usd,
                    images=images,
                    created_at=datetime.now(UTC),
                    expires_at=expires_at,
                )
            )
            _ledger(conn, counters, "reserve", micro_usd, images)

        await self._writes(work)

    async def settle(self, settlement: BudgetSettlement) -> None:
        """Turn a reservation into what was really spent and made (release: spent and made 0)."""
        await self._writes(lambda conn: settle_reservations(conn, [settlement]))

    async def release_expired(self, now: datetime) -> int:
        """Give back every hold past its expiry; how many."""
        expired = sa.select(budget_reservations).where(budget_reservations.c.expires_at < now)
        if self._engine.dialect.name == "postgresql":
            expired = expired.with_for_update(skip_locked=True)

        def work(conn: Connection) -> int:
            rows = list(conn.execute(expired))
            c = budget_counters.c
            for row in rows:
                counters = [_counter_from(document) for document in row.counters]
                for counter in counters:
                    conn.execute(
                        budget_counters.update()
                        .where(_match(counter))
                        .values(
                            reserved_micro_usd=c.reserved_micro_usd - row.micro_usd,
                            images=c.images - row.images,
                        )
                    )
                _ledger(conn, counters, "expire", row.micro_usd, row.images)
            if rows:
                conn.execute(
                    budget_reservations.delete().where(
                        budget_reservations.c.id.in_([row.id for row in rows])
                    )
                )
            return len(rows)

        return await self._writes(work)


def _counter_document(counter: BudgetCounter) -> list[str]:
    return [counter.subject, counter.window, counter.window_start.isoformat()]


def _counter_from(document: list[str]) -> BudgetCounter:
    """Enough of a counter to find its row again (limits and reset do not matter here)."""
    subject, window, start = document
    begins = datetime.fromisoformat(start)
    return BudgetCounter(subject, window, begins, begins, None, None)
