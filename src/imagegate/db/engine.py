"""The async engine, its connection settings, health check and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from imagegate.db.outage import OutageAwarePool, database_unavailable, watch_for_outages
from imagegate.errors import Unavailable
from imagegate.settings import DatabaseSettings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def insert_or_nothing(table: sa.Table, dialect: Dialect) -> sa.Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` for ``dialect``, whose module is imported only
    here: a process on SQLite never loads the PostgreSQL dialect (about 2 MiB resident)."""
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert(table).on_conflict_do_nothing()


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the single writer; busy_timeout makes writers queue, not fail."""
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "busy_timeout=10000",
        "foreign_keys=ON",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def create_engine(url: str, settings: DatabaseSettings) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=settings.echo)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_driver_name() == "asyncpg":
        connect_args = {
            "timeout": settings.connect_timeout_seconds,
            "command_timeout": settings.command_timeout_seconds,
        }
    engine = create_async_engine(
        url,
        echo=settings.echo,
        pool_size=settings.pool_size,
        pool_pre_ping=True,
        poolclass=OutageAwarePool,
        connect_args=connect_args,
    )
    watch_for_outages(engine)
    return engine


T = TypeVar("T")


class TransactionRunner(Protocol):
    """Runs ``work`` on a connection inside one transaction (commit, or rollback and raise)."""

    async def __call__(self, work: Callable[[Connection], T]) -> T: ...


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


RETRIED_SQLSTATES = frozenset({"40P01", "40001"})
"""Deadlock detected, serialization failure: PostgreSQL rolled the transaction back and it
may simply be run again."""
MAX_TRANSACTION_TRIES = 5


def _retriable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in RETRIED_SQLSTATES


class AsyncTransactions:
    """Transactions on the async engine (PostgreSQL/asyncpg: no thread hops).

    A transaction PostgreSQL aborts as a deadlock victim or a serialization failure is run
    again (a few times, after a short random pause): ``work`` is a plain function of the
    connection, so running it again is safe, and callers never see a transient conflict.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def run(self, work: Callable[[Connection], T]) -> T:
        for attempt in range(1, MAX_TRANSACTION_TRIES + 1):
            try:
                async with self._engine.begin() as conn:
                    return await conn.run_sync(work)
            except DBAPIError as exc:
                if attempt == MAX_TRANSACTION_TRIES or not _retriable(exc):
                    raise
                await asyncio.sleep(random.uniform(0, 0.01 * attempt))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        return None


class SqliteThread:
    """SQLite work on one thread with its own connection: a whole transaction costs one hop.

    Through aiosqlite each statement, the BEGIN, the COMMIT and each fetch are separate trips
    to its thread. imagegate keeps two of these: the writer (SQLite has a single writer anyway,
    so one thread loses nothing; batched records need one hop) and a reader for the lookups on
    the request path (the cache index, in-flight claims), which WAL lets run beside the writer.
    Other reads keep using the async engine.

    The hop is a plain queue to the thread and ``call_soon_threadsafe`` back, without an
    executor's future and the asyncio future chained to it: measured 27-29 us of CPU per round
    trip against 38-47 us through ``run_in_executor``, on each of a cache miss's three
    transactions.
    """

    def __init__(self, url: str, settings: DatabaseSettings, name: str) -> None:
        sync_url = make_url(url).set(drivername="sqlite")
        self._engine = sa.create_engine(sync_url, echo=settings.echo, pool_size=1, max_overflow=0)
        event.listen(self._engine, "connect", _tune_sqlite)
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"sqlite-{name}", daemon=True)
        self._thread.start()

    def _in_transaction(self, work: Callable[[Connection], T]) -> T:
        with self._engine.begin() as conn:
            return work(conn)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, work = job
            try:
                result = work()
            except BaseException as exc:  # the caller's to handle, whatever it is
                _answer_from_thread(loop, _set_exception, future, exc)
            else:
                _answer_from_thread(loop, _set_result, future, result)

    def _submit(self, work: Callable[[], T]) -> asyncio.Future[T]:
        if self._closed:  # as an executor after shutdown: an error, not a wait forever
            raise RuntimeError("SqliteThread is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, work))
        return future

    async def run(self, work: Callable[[Connection], T]) -> T:
        return await self._submit(functools.partial(self._in_transaction, work))

    async def aclose(self) -> None:
        if self._closed:
            return
        await self._submit(self._engine.dispose)
        self._closed = True
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)


_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[T]", Callable[[], T]]


def _answer_from_thread(
    loop: asyncio.AbstractEventLoop, answer: Callable[..., None], *args: Any
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
        loop.call_soon_threadsafe(answer, *args)


def _set_result(future: asyncio.Future[T], result: T) -> None:
    if not future.done():  # its caller was canceled
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


@functools.lru_cache(maxsize=64)
def _sqlite_insert(
    table: sa.Table, columns: tuple[str, ...], dialect: Dialect, replace: bool = False
) -> tuple[str, tuple[Callable[[Any], Any] | None, ...]]:
    """The INSERT statement for ``columns`` and each column's bind processor, made once."""
    placeholders = ", ".join("?" for _ in columns)
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    # Names come from our own tables (``table.c[name]`` refuses anything else), never from input.
    sql = f"{verb} INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})"
    return sql, tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
    )


def insert_rows(
    conn: Connection, table: sa.Table, rows: list[dict[str, Any]], *, replace: bool = False
) -> None:
    """Insert ``rows`` (all with the same keys) in one executemany.

    ``replace`` (SQLite only): a row whose primary key is taken replaces the row there.

    On SQLite the statement goes straight to the driver, with SQLAlchemy's own type processors
    applied: for small rows SQLAlchemy's per-statement work costs more than SQLite's insert
    (measured: 200 us against 88 us for a generation's three inserts and commit), and it runs
    on the writer thread while holding the GIL. Elsewhere it goes through Core.
    """
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        if replace:
            raise ValueError("replace=True is for SQLite only")
        conn.execute(table.insert(), rows)
        return
    columns = tuple(rows[0])
    sql, processors = _sqlite_insert(table, columns, conn.dialect, replace)
    params = [
        tuple(
            value if process is None else process(value)
            for value, process in zip(row.values(), processors, strict=True)
        )
        for row in rows
    ]
    conn.exec_driver_sql(sql, params)


class SqlDatabase:
    def __init__(self, engine: AsyncEngine, timeout_seconds: float = 5.0) -> None:
        self._engine = engine
        self._timeout = timeout_seconds
        """A readiness probe answers within this, even when the server stopped answering."""

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(self._timeout), self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Unavailable:
            raise
        except (SQLAlchemyError, OSError) as exc:  # TimeoutError is an OSError
            raise database_unavailable(exc) from exc


def _alembic_config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


MIGRATION_LOCK = 0x696D67_6D6967  # "img" "mig": the advisory lock id migrations hold


async def upgrade_to_head(engine: AsyncEngine, connect_timeout_seconds: float = 10.0) -> None:
    """Apply every pending migration (idempotent).

    Processes that start together on one database (a rollout of N gateways and M workers)
    take turns: on PostgreSQL behind a transaction-scoped advisory lock, on SQLite behind an
    exclusive lock on a file beside the database. The first applies the migrations, the others
    then find the schema at head and do nothing.

    A database already at head (every start but the first after an upgrade) is told by one
    query, without importing alembic: alembic, mako and pygments are about 11 MiB of a
    gateway's resident memory, kept for the life of the process once imported."""
    if await current_revision(engine) == shipped_head():
        return
    if engine.dialect.name == "postgresql":
        # A connection of its own, without the serving engine's command timeout: building an
        # index on a large table may rightly take longer than any request should.
        connect_args = {"timeout": connect_timeout_seconds} if engine.driver == "asyncpg" else {}
        migrator = create_async_engine(engine.url, poolclass=NullPool, connect_args=connect_args)
        watch_for_outages(migrator)
        try:
            async with migrator.begin() as conn:
                take_lock = text("SELECT pg_advisory_xact_lock(:id)")
                await conn.execute(take_lock, {"id": MIGRATION_LOCK})
                await conn.run_sync(_upgrade)
        finally:
            await migrator.dispose()
        return
    database = engine.url.database
    lock_path = f"{database}.migrate-lock" if database and database != ":memory:" else None
    lock = await asyncio.to_thread(_lock_file, lock_path) if lock_path else None
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
    finally:
        if lock is not None:
            lock.close()  # closing the file releases its lock


def _upgrade(connection: Connection) -> None:
    from alembic import command

    command.upgrade(_alembic_config(connection), "head")


def shipped_head() -> str:
    """The newest migration shipped, by file name (``NNNN_<what>.py``, ``revision = "NNNN"``;
    ``tests/integration/test_migrations.py`` holds the files to that)."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def _lock_file(path: str) -> IO[bytes]:
    """``path`` opened and exclusively locked (blocking until no other process holds it)."""
    import fcntl

    handle = open(path, "ab")  # noqa: SIM115  # held open for as long as the lock is
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
    except BaseException:
        handle.close()
        raise
    return handle


def head_revision() -> str:
    """The newest migration shipped with this version of imagegate."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        try:
            result = await conn.execute(text("SELECT version_num FROM alembic_version"))
        except SQLAlchemyError:
            return None
        return result.scalar_one_or_none()
