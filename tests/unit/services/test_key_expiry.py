"""API keys with an expiry, and ``last_used_at`` (real SQLite)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from imagegate.container import Services
from imagegate.errors import ApiKeyExpired, InvalidRequest
from imagegate.models import ApiKey, Role
from imagegate.services.keys import expiry_from

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


async def _key(services: Services, key_id: str) -> ApiKey:
    return next(k for k in await services.keys.list_keys() if k.id == key_id)


async def test_a_key_past_its_expiry_is_refused_with_api_key_expired(services: Services) -> None:
    issued = await services.keys.create("old", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(ApiKeyExpired) as caught:
        await services.keys.authenticate(f"Bearer {issued.secret}")
    assert caught.value.status == 401
    assert caught.value.code == "api_key_expired"
    assert issued.key.prefix in caught.value.message
    assert issued.secret not in caught.value.message


async def test_a_key_before_its_expiry_works_and_lists_its_expiry(services: Services) -> None:
    later = datetime.now(UTC) + timedelta(days=30)
    issued = await services.keys.create("fresh", expires_at=later)
    principal = await services.keys.authenticate(f"Bearer {issued.secret}")
    assert principal.key_id == issued.key.id
    assert (await _key(services, issued.key.id)).expires_at == later


async def test_setting_an_expiry_in_the_past_refuses_a_cached_key_at_once(
    services: Services,
) -> None:
    issued = await services.keys.create("cached")
    await services.keys.authenticate(f"Bearer {issued.secret}")  # now cached
    await services.keys.set_expiry(issued.key.prefix, datetime.now(UTC) - timedelta(minutes=1))
    with pytest.raises(ApiKeyExpired):
        await services.keys.authenticate(f"Bearer {issued.secret}")
    await services.keys.set_expiry(issued.key.prefix, None)
    assert (await services.keys.authenticate(f"Bearer {issued.secret}")).user_name == "cached"


async def test_a_cached_key_is_not_trusted_past_its_expiry(services: Services) -> None:
    # auth_cache_seconds is 5 s: the cache must still give up when the key expires first
    issued = await services.keys.create(
        "brief", expires_at=datetime.now(UTC) + timedelta(seconds=1)
    )
    await services.keys.authenticate(f"Bearer {issued.secret}")
    await asyncio.sleep(1.2)
    with pytest.raises(ApiKeyExpired):
        await services.keys.authenticate(f"Bearer {issued.secret}")


async def test_jobs_of_an_expired_key_run_no_more(services: Services) -> None:
    issued = await services.keys.create("jobs")
    await services.keys.principal_for_key(issued.key.id)
    await services.keys.set_expiry(issued.key.prefix, datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(ApiKeyExpired):
        await services.keys.principal_for_key(issued.key.id)


async def test_last_used_is_recorded_once_a_minute_not_per_request(services: Services) -> None:
    issued = await services.keys.create("busy", Role.USER)
    assert (await _key(services, issued.key.id)).last_used_at is None
    before = datetime.now(UTC)
    await services.keys.authenticate(f"Bearer {issued.secret}")
    await services.keys.aclose()  # waits for the background write
    first = (await _key(services, issued.key.id)).last_used_at
    assert first is not None
    assert first >= before - timedelta(seconds=1)
    for _ in range(5):
        await services.keys.authenticate(f"Bearer {issued.secret}")
    await services.keys.aclose()
    assert (await _key(services, issued.key.id)).last_used_at == first


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        (" 45s ", timedelta(seconds=45)),
    ],
)
def test_durations_become_moments(text: str, delta: timedelta) -> None:
    assert expiry_from(text, None, NOW) == NOW + delta


@pytest.mark.parametrize("text", ["", "30", "d", "0d", "-1d", "3y", "1.5d", "30 days"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        expiry_from(text, None, NOW)
    assert "30d" in caught.value.message


def test_a_moment_without_offset_is_utc_and_both_forms_at_once_are_refused() -> None:
    assert expiry_from(None, datetime(2027, 1, 1), NOW) == datetime(2027, 1, 1, tzinfo=UTC)
    assert expiry_from(None, None, NOW) is None
    with pytest.raises(InvalidRequest):
        expiry_from("1d", datetime(2027, 1, 1), NOW)
