"""Reading a test database directly, beside the processes under test."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine


async def fetch_rows(database_url: str, query: str) -> list[tuple[object, ...]]:
    """The rows of ``query``, on a connection of its own (closed before returning)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(sa.text(query))]
    finally:
        await engine.dispose()
