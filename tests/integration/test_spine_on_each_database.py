"""The whole spine (keys, generate, record, read back) on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from imagegate.container import build_services
from imagegate.errors import NotFound
from imagegate.models import GenerationRequest, Outcome, Role
from imagegate.settings import DatabaseSettings, Settings


def _settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_url="http://img.test",
        database=DatabaseSettings(url=database_url),
    )


async def test_generate_records_everything_and_survives_a_restart(
    tmp_path: Path, database_url: str
) -> None:
    settings = _settings(tmp_path, database_url)
    async with build_services(settings) as services:
        issued = await services.keys.create("alice", Role.USER)
        principal = await services.keys.authenticate(f"Bearer {issued.secret}")
        results = await asyncio.gather(
            *(
                services.generations.generate(
                    principal, GenerationRequest(prompt=f"fox {i}", size="256x256", n=2)
                )
                for i in range(12)
            )
        )
    async with build_services(settings) as services:  # a restart: new engine, same data
        principal = await services.keys.authenticate(f"Bearer {issued.secret}")
        for result in results:
            stored = await services.generations.get(principal, result.generation.id)
            assert stored.outcome is Outcome.GENERATED
            assert stored.prompt == result.generation.prompt
            assert stored.params["size"] == "256x256"
            assert [i.storage_key for i in stored.images] == [
                i.image.storage_key for i in result.images
            ]
            assert [e.type for e in stored.events] == [
                "generation_started",
                "generation_completed",
            ]
            for image in result.images:
                data, mime = await services.image_files.read(image.image.storage_key)
                assert data == image.data
                assert mime == "image/png"


async def test_another_users_generation_is_not_found(tmp_path: Path, database_url: str) -> None:
    async with build_services(_settings(tmp_path, database_url)) as services:
        alice = await services.keys.authenticate(
            f"Bearer {(await services.keys.create('alice')).secret}"
        )
        bob = await services.keys.authenticate(
            f"Bearer {(await services.keys.create('bob')).secret}"
        )
        result = await services.generations.generate(
            alice, GenerationRequest(prompt="fox", size="256x256")
        )
        with pytest.raises(NotFound):
            await services.generations.get(bob, result.generation.id)
        assert (
            await services.generations.get(alice, result.generation.id)
        ).user_id == alice.user_id
