"""In-flight claims in SQL, so identical requests on different processes make one upstream call.

A claim is a row keyed by (scope, cache key) with an owner and a lease. Claiming is an INSERT;
when a row is there already, it is taken over only if its lease expired (its owner died) or it
failed before the claimant started waiting (a failure is delivered to the waiters that saw it,
not to requests that come later). Every write goes through the transaction runner, which on
SQLite is the single writer thread.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.engine import TransactionRunner, insert_or_nothing
from imagegate.db.tables import cache_entries, flights
from imagegate.models import ClaimOutcome, FlightState

_NOW = sa.bindparam("p_now", type_=sa.DateTime(timezone=True))
_SAME_KEY = sa.and_(
    flights.c.scope == sa.bindparam("p_scope"), flights.c.cache_key == sa.bindparam("p_cache_key")
)
# Built once: on the request path, building the statements each time cost more than running them.
_CACHED = sa.select(cache_entries.c.generation_id).where(
    cache_entries.c.scope == sa.bindparam("p_scope"),
    cache_entries.c.cache_key == sa.bindparam("p_cache_key"),
    sa.or_(cache_entries.c.expires_at.is_(None), cache_entries.c.expires_at > _NOW),
)
_TAKE_OVER = (
    flights.update()
    .where(
        _SAME_KEY,
        sa.or_(
            flights.c.expires_at < _NOW,
            sa.and_(
                flights.c.failed_at.is_not(None),
                flights.c.failed_at < sa.bindparam("p_since", type_=sa.DateTime(timezone=True)),
            ),
        ),
    )
    .values(
        owner=sa.bindparam("p_owner"),
        expires_at=sa.bindparam("p_expires_at"),
        failed_at=None,
        error_code=None,
        error_message=None,
    )
)
_INSERT_VALUES: dict[str, sa.BindParameter[Any]] = {
    "scope": sa.bindparam("p_scope"),
    "cache_key": sa.bindparam("p_cache_key"),
    "owner": sa.bindparam("p_owner"),
    "expires_at": sa.bindparam("p_expires_at"),
}
_INSERTS: dict[str, sa.Insert] = {}  # per dialect name, built on first use


def _insert_if_absent(conn: Connection) -> sa.Insert:
    """INSERT ... ON CONFLICT DO NOTHING: the row count says whether this claim won."""
    insert = _INSERTS.get(conn.dialect.name)
    if insert is None:
        insert = insert_or_nothing(flights, conn.dialect).values(_INSERT_VALUES)
        _INSERTS[conn.dialect.name] = insert
    return insert


def _where(scope: str, cache_key: str) -> sa.ColumnElement[bool]:
    return sa.and_(flights.c.scope == scope, flights.c.cache_key == cache_key)


class SqlFlightRepository:
    def __init__(self, engine: AsyncEngine, writes: TransactionRunner) -> None:
        self._engine = engine
        self._writes = writes

    async def claim(
        self,
        scope: str,
        cache_key: str,
        owner: str,
        expires_at: datetime,
        since: datetime | None,
    ) -> ClaimOutcome:
        now = datetime.now(UTC)
        key = {"p_scope": scope, "p_cache_key": cache_key}
        take = {**key, "p_owner": owner, "p_expires_at": expires_at, "p_now": now,
                "p_since": since or now}  # fmt: skip

        def cached(conn: Connection) -> bool:
            if since is None:
                return False
            return conn.execute(_CACHED, {**key, "p_now": now}).first() is not None

        def attempt(conn: Connection) -> ClaimOutcome:
            # The insert first: a key nobody holds (nearly every claim) costs it and one read.
            if conn.execute(_insert_if_absent(conn), take).rowcount:
                # The cache is read after the insert, not before: on PostgreSQL an insert that
                # meets a claim being released waits for that release's commit, which wrote
                # the leader's cache entry, and only a later statement's snapshot sees it. Read
                # before, the entry is missed and a second upstream call is made.
                if cached(conn):
                    conn.execute(_RELEASE, {**key, "p_owner": owner})
                    return ClaimOutcome.CACHED  # finished since this request last looked
                return ClaimOutcome.CLAIMED
            if cached(conn):
                return ClaimOutcome.CACHED
            taken = conn.execute(_TAKE_OVER, take).rowcount
            return ClaimOutcome.CLAIMED if taken else ClaimOutcome.HELD

        return await self._writes(attempt)

    async def extend(self, scope: str, cache_key: str, owner: str, expires_at: datetime) -> None:
        await self._writes(
            lambda conn: conn.execute(
                flights.update()
                .where(_where(scope, cache_key), flights.c.owner == owner)
                .values(expires_at=expires_at)
            )
        )

    async def fail(self, scope: str, cache_key: str, owner: str, code: str, message: str) -> None:
        await self._writes(
            lambda conn: conn.execute(
                flights.update()
                .where(_where(scope, cache_key), flights.c.owner == owner)
                .values(failed_at=datetime.now(UTC), error_code=code, error_message=message[:2000])
            )
        )

    async def release(self, scope: str, cache_key: str, owner: str) -> None:
        await self._writes(lambda conn: release_flight(conn, scope, cache_key, owner))

    async def state(self, scope: str, cache_key: str) -> FlightState | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(flights).where(_where(scope, cache_key)))).first()
        if row is None:
            return None
        return FlightState(
            owner=row.owner,
            expires_at=_aware(row.expires_at),
            failed_at=_aware(row.failed_at) if row.failed_at else None,
            error_code=row.error_code,
            error_message=row.error_message,
        )


_RELEASE = flights.delete().where(_SAME_KEY, flights.c.owner == sa.bindparam("p_owner"))


def release_flight(conn: Connection, scope: str, cache_key: str, owner: str) -> None:
    """End a claim (used inside the generation's own transaction on success)."""
    release_flights(conn, [(scope, cache_key, owner)])


_SQLITE_RELEASE = "DELETE FROM flights WHERE scope = ? AND cache_key = ? AND owner = ?"


def release_flights(conn: Connection, claims: list[tuple[str, str, str]]) -> None:
    """End each (scope, cache key, owner) claim in one statement; on SQLite straight to the
    driver (plain strings: no type processing to skip), see ``engine.insert_rows``."""
    if not claims:
        return
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_SQLITE_RELEASE, claims)
        return
    conn.execute(
        _RELEASE,
        [{"p_scope": scope, "p_cache_key": key, "p_owner": owner} for scope, key, owner in claims],
    )


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything imagegate writes is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
