"""Key expiry and ``last_used_at`` on each database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imagegate.container import build_services
from imagegate.errors import ApiKeyExpired
from imagegate.settings import DatabaseSettings, Settings


async def test_expiry_and_last_use_round_trip(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database=DatabaseSettings(url=database_url))
    async with build_services(settings) as services:
        later = datetime.now(UTC) + timedelta(days=3)
        issued = await services.keys.create("db-key", expires_at=later)
        other = await services.keys.create("db-other")
        for secret in (issued.secret, other.secret):
            await services.keys.authenticate(f"Bearer {secret}")
        await services.keys.aclose()
        by_id = {k.id: k for k in await services.keys.list_keys()}
        assert by_id[issued.key.id].expires_at == later
        assert by_id[issued.key.id].last_used_at is not None
        assert by_id[other.key.id].last_used_at is not None
        await services.keys.set_expiry(issued.key.prefix, datetime.now(UTC) - timedelta(hours=1))
        with pytest.raises(ApiKeyExpired):
            await services.keys.authenticate(f"Bearer {issued.secret}")
