"""Liveness and readiness: can this process serve requests right now?"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from imagegate.db.base import Database
from imagegate.errors import Unavailable
from imagegate.storage.base import BlobStore


class HealthService:
    def __init__(
        self,
        database: Database,
        blobs: BlobStore,
        degradations: Sequence[Callable[[], str | None]] = (),
    ) -> None:
        self._database = database
        self._blobs = blobs
        self._degradations = degradations

    def degraded(self) -> list[str]:
        """What works in a reduced way right now (serving goes on): e.g. limits fail-open."""
        return [reason for check in self._degradations if (reason := check()) is not None]

    async def readiness(self) -> dict[str, str]:
        """``{"database": "ok" | reason, "storage": "ok" | reason}``."""
        checks: dict[str, str] = {}
        for name, check in (("database", self._database.ping), ("storage", self._blobs.check)):
            try:
                await check()
                checks[name] = "ok"
            except Unavailable as exc:
                checks[name] = exc.message
        return checks
