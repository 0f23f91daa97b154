"""The admin pages' reads on each database (SQLite and PostgreSQL): users with their active
key counts, one user by id or name, queue depths per model."""

from __future__ import annotations

from pathlib import Path

from imagegate.container import build_services
from imagegate.models import GenerationRequest, JobStatus, Limits, Role
from imagegate.services.jobs import JobOptions
from imagegate.settings import DatabaseSettings, JobSettings, Settings


async def test_users_and_queue_depths_round_trip(database_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database=DatabaseSettings(url=database_url),
        jobs=JobSettings(embedded_workers=False),
    )
    async with build_services(settings) as services:
        first = await services.keys.create("one", user="zoe")
        await services.keys.create("two", user="zoe")
        await services.keys.revoke(first.key.prefix)
        admin = await services.keys.create("root", Role.ADMIN)
        await services.keys.set_user_limits("zoe", Limits(budget_micro_usd_month=3_000_000))
        users = {u.name: u for u in await services.keys.list_users()}
        assert users["zoe"].active_keys == 1
        assert users["zoe"].limits.budget_micro_usd_month == 3_000_000
        assert users["root"].role is Role.ADMIN
        assert (await services.keys.find_user("zoe")) is not None
        assert await services.keys.find_user("nobody") is None
        principal = await services.keys.authenticate(f"Bearer {admin.secret}")
        request = GenerationRequest(prompt="a queued boat", model="builtin", size="256x256")
        await services.jobs.submit(principal, request, JobOptions())
        depths = await services.jobs.depths(principal)
        assert depths == {"builtin": {JobStatus.QUEUED: 1}}
