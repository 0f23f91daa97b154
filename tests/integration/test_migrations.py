"""Migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from imagegate.db.engine import create_engine, current_revision, head_revision, upgrade_to_head
from imagegate.db.tables import include_object, metadata
from imagegate.settings import DatabaseSettings

VERSIONS = Path(__file__).parents[2] / "src/imagegate/db/migrations/versions"


async def test_upgrade_matches_the_declared_schema_and_is_idempotent(database_url: str) -> None:
    engine = create_engine(database_url, DatabaseSettings())
    try:
        assert await current_revision(engine) is None
        await upgrade_to_head(engine)
        await upgrade_to_head(engine)
        assert await current_revision(engine) == head_revision()
        assert head_revision() == max(p.stem.split("_")[0] for p in VERSIONS.glob("0*.py"))
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"include_object": include_object}),
                    metadata,
                )
            )
        assert diff == []
    finally:
        await engine.dispose()
