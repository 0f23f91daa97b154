"""Test helpers that look at real results (rows, files, processes), shared by the suites."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from imagegate.catalog import ModelSpec
from imagegate.models import NormalizedRequest, OutputFormat, ResponseFormat, Size
from imagegate.settings import Settings


class DataDir:
    """Looks at what a test run left on disk: SQL rows and stored files."""

    def __init__(self, settings: Settings) -> None:
        self.db_path = settings.data_dir / "imagegate.db"
        self.files_root = settings.storage_root

    @classmethod
    def at(cls, data_dir: Path) -> DataDir:
        return cls(Settings(data_dir=data_dir))

    def count(self, table: str) -> int:
        with sqlite3.connect(self.db_path) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def rows(self, query: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db_path) as conn:
            return list(conn.execute(query).fetchall())

    def stored_files(self) -> list[Path]:
        return sorted(p for p in self.files_root.rglob("*") if p.is_file())


async def create_postgres_database(admin_url: str) -> str:
    """Create a fresh, uniquely named database on the server of ``admin_url``; return its URL."""
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    name = f"imagegate_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin.set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin.set(database=name).render_as_string(False)


async def drop_postgres_database(admin_url: str, url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    name = make_url(url).database
    conn = await asyncpg.connect(admin.set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def normalized_request(spec: ModelSpec | None = None, **fields: object) -> NormalizedRequest:
    """A ``NormalizedRequest`` as the service would hand it to an adapter: the model's defaults
    (or plain ones without a model), changed by ``fields``."""
    defaults: dict[str, object] = {
        "model": spec.name if spec else "m",
        "prompt": "a lighthouse at dusk",
        "n": 1,
        "size": spec.default_size if spec else Size(1024, 1024),
        "quality": spec.default_quality if spec else "standard",
        "output_format": spec.default_output_format if spec else OutputFormat.PNG,
        "output_compression": None,
        "style": None,
        "background": None,
        "seed": None,
        "response_format": ResponseFormat.B64_JSON,
    }
    return NormalizedRequest(**{**defaults, **fields})  # type: ignore[arg-type]
