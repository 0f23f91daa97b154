"""Users and API keys in SQL. Only key hashes are stored; secrets never reach this module."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.tables import api_keys, users
from imagegate.models import NO_LIMITS, ApiKey, Limits, RateLimits, Role, UserRecord, new_id

LIMIT_NAMES = (
    "budget_micro_usd_day",
    "budget_micro_usd_month",
    "images_per_minute",
    "images_per_day",
)

_KEY_COLUMNS = (
    *(api_keys.c[name].label(f"key_{name}") for name in LIMIT_NAMES),
    *(users.c[name].label(f"user_{name}") for name in LIMIT_NAMES),
    api_keys.c.requests_per_minute,
    api_keys.c.concurrent_generations,
    api_keys.c.id,
    api_keys.c.user_id,
    users.c.name.label("user_name"),
    users.c.role,
    api_keys.c.name,
    api_keys.c.prefix,
    api_keys.c.created_at,
    api_keys.c.revoked_at,
    api_keys.c.expires_at,
    api_keys.c.last_used_at,
)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive; they were written in UTC."""
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _to_key(row: sa.Row[tuple[object, ...]]) -> ApiKey:
    m = row._mapping
    return ApiKey(
        id=m["id"],
        user_id=m["user_id"],
        user_name=m["user_name"],
        role=Role(m["role"]),
        name=m["name"],
        prefix=m["prefix"],
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
        limits=Limits(*(m[f"key_{name}"] for name in LIMIT_NAMES)),
        user_limits=Limits(*(m[f"user_{name}"] for name in LIMIT_NAMES)),
        rate_limits=RateLimits(m["requests_per_minute"], m["concurrent_generations"]),
        expires_at=_utc(m["expires_at"]),
        last_used_at=_utc(m["last_used_at"]),
    )


def _limit_values(limits: Limits) -> dict[str, int | None]:
    return {name: getattr(limits, name) for name in LIMIT_NAMES}


def _rate_limit_values(rate_limits: RateLimits) -> dict[str, int | None]:
    return {
        "requests_per_minute": rate_limits.requests_per_minute,
        "concurrent_generations": rate_limits.concurrent_generations,
    }


def _keys_query() -> sa.Select[tuple[object, ...]]:
    return sa.select(*_KEY_COLUMNS).join(users, users.c.id == api_keys.c.user_id)


class SqlKeyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def ensure_user(
        self, name: str, role: Role, limits: Limits = NO_LIMITS
    ) -> tuple[str, Role]:
        select_user = sa.select(users.c.id, users.c.role).where(users.c.name == name)
        async with self._engine.begin() as conn:
            row = (await conn.execute(select_user)).first()
            if row is not None:
                return row.id, Role(row.role)
        try:
            async with self._engine.begin() as conn:
                user_id = new_id()
                await conn.execute(
                    users.insert().values(
                        id=user_id,
                        name=name,
                        role=role.value,
                        created_at=datetime.now(UTC),
                        **_limit_values(limits),
                    )
                )
                return user_id, role
        except IntegrityError:  # another process created it between our select and insert
            async with self._engine.connect() as conn:
                row = (await conn.execute(select_user)).one()
                return row.id, Role(row.role)

    async def insert_key(self, key: ApiKey, key_hash: str, webhook_secret: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                api_keys.insert().values(
                    id=key.id,
                    user_id=key.user_id,
                    name=key.name,
                    prefix=key.prefix,
                    key_hash=key_hash,
                    webhook_secret=webhook_secret,
                    created_at=key.created_at,
                    expires_at=key.expires_at,
                    **_limit_values(key.limits),
                    **_rate_limit_values(key.rate_limits),
                )
            )

    async def find_active_by_hash(self, key_hash: str) -> tuple[ApiKey, str] | None:
        query = (
            _keys_query()
            .add_columns(api_keys.c.key_hash)
            .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else (_to_key(row), row.key_hash)

    async def find_active_by_id(self, key_id: str) -> ApiKey | None:
        query = _keys_query().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _to_key(row)

    async def find_by_name(self, user_name: str, key_name: str) -> ApiKey | None:
        query = (
            _keys_query()
            .where(users.c.name == user_name, api_keys.c.name == key_name)
            .order_by(api_keys.c.created_at.desc())
            .limit(1)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _to_key(row)

    async def list_keys(self, include_revoked: bool) -> list[ApiKey]:
        query = _keys_query().order_by(api_keys.c.created_at)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            return [_to_key(row) for row in await conn.execute(query)]

    async def revoke(self, prefix: str) -> list[ApiKey]:
        active = (api_keys.c.prefix == prefix) & api_keys.c.revoked_at.is_(None)
        async with self._engine.begin() as conn:
            found = [_to_key(row) for row in await conn.execute(_keys_query().where(active))]
            if found:
                await conn.execute(
                    api_keys.update().where(active).values(revoked_at=datetime.now(UTC))
                )
        return found

    async def set_key_limits(
        self, prefix: str, limits: Limits, rate_limits: RateLimits
    ) -> list[ApiKey]:
        active = (api_keys.c.prefix == prefix) & api_keys.c.revoked_at.is_(None)
        values = {**_limit_values(limits), **_rate_limit_values(rate_limits)}
        async with self._engine.begin() as conn:
            await conn.execute(api_keys.update().where(active).values(**values))
            return [_to_key(row) for row in await conn.execute(_keys_query().where(active))]

    async def set_key_expiry(self, prefix: str, expires_at: datetime | None) -> list[ApiKey]:
        active = (api_keys.c.prefix == prefix) & api_keys.c.revoked_at.is_(None)
        async with self._engine.begin() as conn:
            await conn.execute(api_keys.update().where(active).values(expires_at=expires_at))
            return [_to_key(row) for row in await conn.execute(_keys_query().where(active))]

    async def record_last_used(self, used: dict[str, datetime]) -> None:
        if not used:
            return
        statement = (
            api_keys.update()
            .where(api_keys.c.id == sa.bindparam("key_id"))
            .values(last_used_at=sa.bindparam("used_at"))
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement, [{"key_id": k, "used_at": at} for k, at in used.items()])

    async def set_user_limits(self, user_name: str, limits: Limits) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                users.update().where(users.c.name == user_name).values(**_limit_values(limits))
            )
            return bool(result.rowcount)

    async def set_user_enhance_prompt(self, user_name: str, enhance: bool | None) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                users.update().where(users.c.name == user_name).values(enhance_prompt=enhance)
            )
            return bool(result.rowcount)

    async def count_active_admin_keys(self) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(api_keys.join(users, users.c.id == api_keys.c.user_id))
            .where(api_keys.c.revoked_at.is_(None), users.c.role == Role.ADMIN.value)
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def list_users(self, limit: int) -> list[UserRecord]:
        active = (
            sa.select(api_keys.c.user_id, sa.func.count().label("active_keys"))
            .where(api_keys.c.revoked_at.is_(None))
            .group_by(api_keys.c.user_id)
            .subquery()
        )
        query = (
            sa.select(*_USER_COLUMNS, sa.func.coalesce(active.c.active_keys, 0).label("n"))
            .select_from(users.outerjoin(active, active.c.user_id == users.c.id))
            .order_by(users.c.name)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_to_user(row, int(row.n)) for row in await conn.execute(query)]

    async def find_user(
        self, *, user_id: str | None = None, name: str | None = None
    ) -> UserRecord | None:
        if user_id is None and name is None:
            return None
        where = users.c.id == user_id if user_id is not None else users.c.name == name
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(*_USER_COLUMNS).where(where))).first()
        return None if row is None else _to_user(row, 0)


_USER_COLUMNS = (
    users.c.id,
    users.c.name,
    users.c.role,
    users.c.created_at,
    users.c.enhance_prompt,
    *(users.c[name] for name in LIMIT_NAMES),
)


def _to_user(row: Any, active_keys: int) -> UserRecord:
    m = row._mapping
    return UserRecord(
        id=m["id"],
        name=m["name"],
        role=Role(m["role"]),
        created_at=_utc(m["created_at"]) or datetime.now(UTC),
        limits=Limits(*(m[name] for name in LIMIT_NAMES)),
        active_keys=active_keys,
        enhance_prompt=m["enhance_prompt"],
    )
