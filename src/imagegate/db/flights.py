"""In-flight claims in SQL, so identical requests on different processes make one upstream call.

A claim is a row keyed by (scope, cache key) with an owner and a lease. Claiming is an INSERT;
when a row is there already, it is taken over only if its lease expired (its owner died) or it
failed before the claimant started waiting (a failure is delivered to the waiters that saw it,
not to requests that come later). Every write goes through the transaction runner, which on
SQLite is the single writer thread.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.engine import TransactionRunner
from imagegate.db.tables import flights
from imagegate.models import FlightState


def _insert_if_absent(conn: Connection) -> sa.Insert:
    """INSERT ... ON CONFLICT DO NOTHING: the row count says whether this claim won."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return dialect_insert(flights).on_conflict_do_nothing()


def _where(scope: str, cache_key: str) -> sa.ColumnElement[bool]:
    return sa.and_(flights.c.scope == scope, flights.c.cache_key == cache_key)


class SqlFlightRepository:
    def __init__(self, engine: AsyncEngine, writes: TransactionRunner) -> None:
        self._engine = engine
        self._writes = writes

    async def claim(
        self, scope: str, cache_key: str, owner: str, expires_at: datetime, since: datetime
    ) -> bool:
        def attempt(conn: Connection) -> bool:
            now = datetime.now(UTC)
            taken = conn.execute(
                flights.update()
                .where(
                    _where(scope, cache_key),
                    sa.or_(
                        flights.c.expires_at < now,
                        sa.and_(flights.c.failed_at.is_not(None), flights.c.failed_at < since),
                    ),
                )
                .values(
                    owner=owner,
                    expires_at=expires_at,
                    failed_at=None,
                    error_code=None,
                    error_message=None,
                )
            )
            if taken.rowcount:
                return True
            insert = _insert_if_absent(conn).values(
                scope=scope, cache_key=cache_key, owner=owner, expires_at=expires_at
            )
            return bool(conn.execute(insert).rowcount)

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


def release_flight(conn: Connection, scope: str, cache_key: str, owner: str) -> None:
    """End a claim (used inside the generation's own transaction on success)."""
    conn.execute(flights.delete().where(_where(scope, cache_key), flights.c.owner == owner))


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything imagegate writes is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
