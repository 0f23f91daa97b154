from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from tests.fakes.openai import build_openai_fake
from tests.fakes.server import FakeServer, FakeState, InFlightMeter, MeteredFake
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


@pytest.fixture
def metered_upstream() -> Iterator[MeteredFake]:
    """The OpenAI fake with its call log, a meter of its concurrent calls, and its URL."""
    state = FakeState()
    meter = InFlightMeter(build_openai_fake(state))
    with FakeServer(meter) as server:
        yield state, meter, server.base_url
