"""The SQLite transaction thread: results and errors reach the caller, a failure rolls back."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from imagegate.db.engine import SqliteThread
from imagegate.settings import DatabaseSettings


def _thread(tmp_path: Path) -> SqliteThread:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    return SqliteThread(url, DatabaseSettings(url=url), "writer")


async def test_a_transaction_commits_and_a_failing_one_rolls_back(tmp_path: Path) -> None:
    thread = _thread(tmp_path)
    try:

        def setup(conn: Connection) -> None:
            conn.execute(text("CREATE TABLE t (v INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))

        def fail(conn: Connection) -> None:
            conn.execute(text("INSERT INTO t VALUES (2)"))
            raise LookupError("boom")

        def values(conn: Connection) -> list[int]:
            return [row[0] for row in conn.execute(text("SELECT v FROM t ORDER BY v"))]

        await thread.run(setup)
        with pytest.raises(LookupError, match="boom"):
            await thread.run(fail)
        assert await thread.run(values) == [1]
    finally:
        await thread.aclose()


async def test_work_after_closing_is_an_error_not_a_wait(tmp_path: Path) -> None:
    thread = _thread(tmp_path)
    await thread.aclose()
    await thread.aclose()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        await thread.run(lambda conn: conn.execute(text("SELECT 1")))
