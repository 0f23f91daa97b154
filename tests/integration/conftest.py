from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.support import create_postgres_database, drop_postgres_database


@pytest.fixture
async def postgres_database(postgres_url: str) -> AsyncIterator[str]:
    """A fresh empty PostgreSQL database for one test, dropped afterwards."""
    try:
        url = await create_postgres_database(postgres_url)
    except OSError as exc:
        pytest.fail(f"PostgreSQL at {postgres_url} is not reachable: {exc}")
    try:
        yield url
    finally:
        await drop_postgres_database(postgres_url, url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Each suite that takes this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/imagegate.db"
    url: str = request.getfixturevalue("postgres_database")
    return url
