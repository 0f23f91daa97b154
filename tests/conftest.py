"""Shared fixtures: real SQLite files, real local storage, a real S3 server, a fresh app per
test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError
from tests.support import DataDir, create_postgres_database, drop_postgres_database
from tests.support.redis import delete_prefix, ping, unique_prefix
from tests.support.s3 import S3Server

from imagegate.api.app import create_app
from imagegate.container import Services, build_services
from imagegate.models import Role
from imagegate.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", public_url="http://testserver")


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with build_services(settings) as built:
        yield built


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def user_key(services: Services) -> str:
    return (await services.keys.create("user-a", Role.USER)).secret


@pytest.fixture
def auth(user_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_key}"}


@pytest.fixture
def data_dir(settings: Settings) -> DataDir:
    return DataDir(settings)


def _server_url(variable: str, suite: str) -> str:
    """A test server's URL from ``variable``: required in CI (``.ci/run`` sets it), the suite
    skipped with that reason elsewhere."""
    url = os.environ.get(variable)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"CI must set {variable} (see .ci/run)")
        pytest.skip(f"{suite} suite: set {variable} to run it")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server the integration suites use."""
    return _server_url("IMAGEGATE_TEST_POSTGRES_URL", "PostgreSQL")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis server the Redis suites use."""
    return _server_url("IMAGEGATE_TEST_REDIS_URL", "Redis")


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    try:
        await ping(redis_url)
    except (RedisError, OSError) as exc:
        pytest.fail(f"Redis at {redis_url} is not reachable: {exc}")
    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        await delete_prefix(redis_url, prefix)


@pytest.fixture
async def redis_pool(redis_url: str, redis_prefix: str) -> AsyncIterator[ConnectionPool]:
    """Connections to the test Redis, as the container builds them (keys: ``redis_prefix``)."""
    from imagegate.limits.redis import connection_pool

    pool = connection_pool(redis_url, timeout_seconds=2)
    try:
        yield pool
    finally:
        await pool.disconnect()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3-compatible server (moto) on loopback for the whole run; tests take fresh buckets."""
    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log").start()
    try:
        yield server
    finally:
        server.stop()


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
