"""Usage reports and telemetry in SQL: aggregates over ``generations``, pages of ``events``.

A report is one aggregate query, so the database, not Python, does the counting. The same query
runs on SQLite and PostgreSQL; the two places where they differ, a timestamp's UTC day and a
period bound, are ``_utc_day`` and ``_bound``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.base import EventRecord, UsageGrouping, UsageTally
from imagegate.db.tables import api_keys, events, generations, users
from imagegate.models import Outcome

_SAVING = (Outcome.CACHE_HIT.value, Outcome.SEMANTIC_HIT.value, Outcome.COALESCED.value)
_DELIVERED = (Outcome.GENERATED.value, *_SAVING)
_COUNTED = (
    Outcome.GENERATED,
    Outcome.CACHE_HIT,
    Outcome.SEMANTIC_HIT,
    Outcome.COALESCED,
    Outcome.FAILED,
)


def _number(value: int) -> sa.ColumnElement[int]:
    """An inline integer: bound parameters would leave PostgreSQL guessing their type in CASE."""
    return sa.literal_column(str(value), sa.Integer)


def _utc(moment: datetime) -> datetime:
    """Naive times are taken as UTC, which is what every writer records."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _bound(dialect: str, moment: datetime) -> sa.ColumnElement[Any]:
    """A period bound that compares exactly with the stored timestamps.

    SQLite keeps timestamps as text and compares them as text, and its rows hold two spellings
    of a UTC time: SQLAlchemy's ``2026-03-01 10:00:00.000000`` (rows written through Core) and
    the sqlite3 adapter's ``2026-03-01 10:00:00+00:00`` / ``...00.000001+00:00`` (rows written
    by ``engine.insert_rows``). Spelled with ``+00:00`` when it is a whole second and with six
    digits otherwise, a bound sorts against both spellings exactly where its instant does.
    """
    moment = _utc(moment)
    if dialect != "sqlite":
        return sa.literal(moment, sa.DateTime(timezone=True))
    fraction = f".{moment.microsecond:06d}" if moment.microsecond else "+00:00"
    return sa.literal(f"{moment:%Y-%m-%d %H:%M:%S}{fraction}", sa.String)


def _utc_day(dialect: str, column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """``YYYY-MM-DD`` of the UTC day of ``column``, as text on both databases.

    Literals are inlined, not bound, so that PostgreSQL sees the same expression in SELECT and
    GROUP BY.
    """
    if dialect == "sqlite":
        # Both spellings (see ``_bound``) start with the UTC date. SQLite's date functions
        # would round to the millisecond and move 23:59:59.9995 into the next day.
        return sa.func.substr(column, _number(1), _number(10), type_=sa.String)
    # PostgreSQL (the other supported database): UTC whatever the session's time zone.
    return sa.func.to_char(
        sa.func.timezone(sa.literal_column("'UTC'"), column),
        sa.literal_column("'YYYY-MM-DD'"),
        type_=sa.String,
    )


def _total(expression: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """SUM that is 0, not NULL, over no rows."""
    return sa.func.coalesce(sa.func.sum(expression), _number(0))


def _where(outcomes: tuple[str, ...], value: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The sum of ``value`` over the rows with one of ``outcomes``."""
    return _total(sa.case((generations.c.outcome.in_(outcomes), value), else_=_number(0)))


def _measures() -> list[sa.ColumnElement[Any]]:
    one = _number(1)
    return [
        sa.func.count().label("requests"),
        _where(_DELIVERED, generations.c.n).label("images"),
        *(_where((o.value,), one).label(o.value) for o in _COUNTED),
        _total(generations.c.cost_micro_usd).label("spend"),
        _where(_SAVING, generations.c.saved_cost_micro_usd).label("saved"),
    ]


def _tally_query(
    dialect: str,
    user_id: str | None,
    start: datetime,
    end: datetime,
    group_by: UsageGrouping | None,
) -> sa.Select[Any]:
    g = generations.c
    keys: list[sa.ColumnElement[Any]] = []
    source: sa.FromClause = generations
    if group_by is UsageGrouping.DAY:
        keys = [_utc_day(dialect, g.created_at)]
    elif group_by is UsageGrouping.MODEL:
        keys = [g.model]
    elif group_by is UsageGrouping.PROVIDER:
        keys = [g.provider]
    elif group_by is UsageGrouping.KEY:
        keys = [api_keys.c.prefix, api_keys.c.name, g.api_key_id]
        source = generations.outerjoin(api_keys, api_keys.c.id == g.api_key_id)
    labelled = [key.label(f"key_{i}") for i, key in enumerate(keys)]
    query = (
        sa.select(*labelled, *_measures())
        .select_from(source)
        .where(g.created_at >= _bound(dialect, start), g.created_at < _bound(dialect, end))
    )
    if user_id is not None:
        query = query.where(g.user_id == user_id)
    return query.group_by(*keys) if keys else query


def _to_tally(row: sa.Row[Any], grouped_by_key: bool) -> UsageTally:
    m = row._mapping
    # PostgreSQL sums bigints as numeric (Decimal): int() is exact on both databases.
    return UsageTally(
        key=m.get("key_0"),
        key_name=m["key_1"] if grouped_by_key else None,
        requests=int(m["requests"]),
        images=int(m["images"]),
        generated=int(m[Outcome.GENERATED.value]),
        cache_hit=int(m[Outcome.CACHE_HIT.value]),
        semantic_hit=int(m[Outcome.SEMANTIC_HIT.value]),
        coalesced=int(m[Outcome.COALESCED.value]),
        failed=int(m[Outcome.FAILED.value]),
        spend_micro_usd=int(m["spend"]),
        saved_micro_usd=int(m["saved"]),
    )


def _to_event(row: sa.Row[Any]) -> EventRecord:
    return EventRecord(
        id=int(row.id),
        generation_id=row.generation_id,
        type=row.type,
        data=dict(row.data),
        created_at=_utc(row.created_at),  # SQLite gives the stored UTC digits back naive
    )


class SqlUsageRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def find_user(self, name_or_id: str) -> tuple[str, str] | None:
        query = sa.select(users.c.id, users.c.name).where(
            sa.or_(users.c.id == name_or_id, users.c.name == name_or_id)
        )
        async with self._engine.connect() as conn:
            found = list(await conn.execute(query))
        # An id wins over a name that happens to look like one.
        found.sort(key=lambda row: row.id != name_or_id)
        return (found[0].id, found[0].name) if found else None

    async def tally(
        self,
        *,
        user_id: str | None,
        start: datetime,
        end: datetime,
        group_by: UsageGrouping | None,
    ) -> list[UsageTally]:
        async with self._engine.connect() as conn:
            query = _tally_query(conn.dialect.name, user_id, start, end, group_by)
            rows = list(await conn.execute(query))
        tallies = [_to_tally(row, group_by is UsageGrouping.KEY) for row in rows]
        # Sorted here, not in SQL: the databases disagree on where NULL sorts.
        return sorted(tallies, key=lambda t: (t.key is None, t.key or "", t.key_name or ""))

    async def events(
        self,
        *,
        event_type: str | None,
        generation_id: str | None,
        start: datetime | None,
        end: datetime | None,
        before_id: int | None,
        limit: int,
    ) -> list[EventRecord]:
        e = events.c
        conditions: list[sa.ColumnElement[bool]] = []
        if event_type is not None:
            conditions.append(e.type == event_type)
        if generation_id is not None:
            conditions.append(e.generation_id == generation_id)
        if before_id is not None:
            conditions.append(e.id < before_id)
        async with self._engine.connect() as conn:
            if start is not None:
                conditions.append(e.created_at >= _bound(conn.dialect.name, start))
            if end is not None:
                conditions.append(e.created_at < _bound(conn.dialect.name, end))
            query = sa.select(events).where(*conditions).order_by(e.id.desc()).limit(limit)
            return [_to_event(row) for row in await conn.execute(query)]
