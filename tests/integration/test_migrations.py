"""Migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

import asyncio
from asyncio.subprocess import PIPE, STDOUT
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from tests.support.processes import IMAGEGATE, environment

from imagegate.db.engine import (
    create_engine,
    current_revision,
    head_revision,
    shipped_head,
    upgrade_to_head,
)
from imagegate.db.tables import include_object, with_postgresql_options
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
        assert shipped_head() == head_revision()  # what a start at head checks, alembic-free
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"include_object": include_object}),
                    with_postgresql_options(),
                )
            )
        assert diff == []
    finally:
        await engine.dispose()


async def test_processes_starting_together_migrate_an_empty_database_once(
    database_url: str, tmp_path: Path
) -> None:
    """N gateways and workers rolled out at once on a fresh database each run the upgrade on
    start: one applies it, the others wait for it and find nothing left to do."""
    env = environment(tmp_path / "data", IMAGEGATE_DATABASE__URL=database_url)
    runs = [
        await asyncio.create_subprocess_exec(
            *IMAGEGATE, "migrate", env=env, stdout=PIPE, stderr=STDOUT
        )
        for _ in range(4)
    ]
    try:
        outputs = await asyncio.wait_for(asyncio.gather(*(r.communicate() for r in runs)), 90)
    finally:
        for run in runs:
            if run.returncode is None:
                run.kill()
    assert [run.returncode for run in runs] == [0] * 4, [out.decode() for out, _ in outputs]
    engine = create_engine(database_url, DatabaseSettings())
    try:
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            versions = await conn.execute(text("SELECT count(*) FROM alembic_version"))
            assert versions.scalar_one() == 1
    finally:
        await engine.dispose()


def test_every_migration_file_is_named_after_its_revision() -> None:
    """``shipped_head`` reads the newest revision off the file names."""
    for path in VERSIONS.glob("[0-9]*_*.py"):
        source = path.read_text()
        assert f'revision = "{path.name.split("_", 1)[0]}"' in source, path.name


async def test_a_start_on_a_database_at_head_does_not_load_alembic(
    database_url: str, tmp_path: Path
) -> None:
    """Alembic (with mako and pygments) is memory a serving process keeps for good: a
    database already at head is told without it."""
    engine = create_engine(database_url, DatabaseSettings())
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    script = (
        "import asyncio, sys\n"
        "from imagegate.db.engine import create_engine, upgrade_to_head\n"
        "from imagegate.settings import DatabaseSettings\n"
        "async def main():\n"
        "    engine = create_engine(sys.argv[1], DatabaseSettings())\n"
        "    await upgrade_to_head(engine)\n"
        "    await engine.dispose()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    run = await asyncio.create_subprocess_exec(
        IMAGEGATE[0], "-c", script, database_url, env=environment(tmp_path), stdout=PIPE
    )
    out, _ = await asyncio.wait_for(run.communicate(), 60)
    assert run.returncode == 0
    assert out.decode().strip() == "[]"
