"""A database that cannot be reached surfaces as ``DatabaseUnavailable``, at once.

Three places see an outage, and each turns it into the same typed error (503
``database_unavailable`` with ``Retry-After``) so that no caller above ``db/`` has to know a
driver's exceptions:

- opening a connection (``do_connect``): refused, reset, timed out (asyncpg's ``timeout``), the
  server starting up or shutting down, too many clients;
- a statement on an open connection (``handle_error``): the connection dropped mid-query
  (SQLAlchemy calls it a disconnect and throws the connection away), or no answer within the
  command timeout. Pool pre-pings are left alone: there SQLAlchemy reconnects by itself;
- waiting for a pooled connection (``OutageAwarePool``) past the pool timeout.

Nothing is restarted: the pool drops dead connections and opens new ones when the database is
back, so the same process serves again with the next request.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from imagegate.errors import DatabaseUnavailable

RETRY_AFTER_SECONDS = 2.0
"""The ``Retry-After`` hint: a restart or fail-over usually takes seconds, not minutes."""

_CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
"""admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections (and every code
of class 08, connection_exception)."""


def database_unavailable(cause: BaseException) -> DatabaseUnavailable:
    # The cause's class only: driver messages may name hosts, users or databases. SQLAlchemy's
    # asyncpg adapter wraps the driver's own error (``Error``): name the driver's.
    driver = cause.__cause__ if isinstance(cause.__cause__, Exception) else cause
    return DatabaseUnavailable(
        f"The database is unavailable right now ({type(driver).__name__}); retry shortly.",
        retry_after=RETRY_AFTER_SECONDS,
    )


def _lost_connection(error: BaseException) -> bool:
    if isinstance(error, OSError):  # refused, reset; TimeoutError (asyncpg's timeouts) too
        return True
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return isinstance(code, str) and (code.startswith("08") or code in _CONNECTION_SQLSTATES)


def _on_statement_error(context: ExceptionContext) -> BaseException | None:
    if context.is_pre_ping or not isinstance(context.original_exception, Exception):
        # A pre-ping reconnects by itself; SQLAlchemy counts a cancellation (CancelledError)
        # as a disconnect too, but it must stay a cancellation.
        return None
    if context.is_disconnect or _lost_connection(context.original_exception):
        return database_unavailable(context.original_exception)
    return None


def _connect(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
    try:
        return dialect.connect(*cargs, **cparams)
    except Exception as exc:
        raise database_unavailable(exc) from exc


class OutageAwarePool(AsyncAdaptedQueuePool):
    """The async engine's pool, whose checkout timeout is a 503 like any other outage."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except sa_exc.TimeoutError as exc:
            raise database_unavailable(exc) from exc


def watch_for_outages(engine: AsyncEngine) -> None:
    """Make ``engine`` raise ``DatabaseUnavailable`` for unreachable-database failures."""
    event.listen(engine.sync_engine, "do_connect", _connect)
    event.listen(engine.sync_engine, "handle_error", _on_statement_error, retval=True)
