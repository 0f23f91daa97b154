"""Admins set a key's traffic limits over ``PUT /v1/keys/{prefix}/limits`` (builtin model, real
SQLite); the budget and quota fields of the same route are covered in test_cache_api.py."""

from __future__ import annotations

import httpx
import pytest

from imagegate.container import Services
from imagegate.models import RateLimits, Role
from imagegate.services.keys import IssuedKey

BODY = {"model": "builtin", "prompt": "a paper boat", "size": "256x256"}


@pytest.fixture
async def admin_auth(services: Services) -> dict[str, str]:
    admin = await services.keys.create("root", Role.ADMIN)
    return {"Authorization": f"Bearer {admin.secret}"}


@pytest.fixture
async def worker(services: Services) -> IssuedKey:
    return await services.keys.create("worker")


async def _own_limits(services: Services, issued: IssuedKey) -> RateLimits:
    [key] = [k for k in await services.keys.list_keys() if k.id == issued.key.id]
    return key.rate_limits


async def test_a_keys_requests_per_minute_holds_from_the_next_request(
    client: httpx.AsyncClient, admin_auth: dict[str, str], worker: IssuedKey
) -> None:
    url = f"/v1/keys/{worker.key.prefix}/limits"
    body = {"requests_per_minute": 2, "concurrent_generations": 1}
    answer = await client.put(url, json=body, headers=admin_auth)
    assert answer.status_code == 200
    assert answer.json() == {
        "budget_usd_day": None,
        "budget_usd_month": None,
        "images_per_minute": None,
        "images_per_day": None,
        **body,
    }
    auth = {"Authorization": f"Bearer {worker.secret}"}
    sent = [await client.post("/v1/images/generations", json=BODY, headers=auth) for _ in "abc"]
    assert [r.status_code for r in sent] == [200, 200, 429]
    assert [r.headers["x-ratelimit-limit-requests"] for r in sent] == ["2"] * 3
    assert [r.headers["x-ratelimit-remaining-requests"] for r in sent] == ["1", "0", "0"]
    assert sent[2].json()["error"]["code"] == "rate_limit_exceeded"


async def test_omitted_traffic_limits_go_back_to_the_default_and_zero_is_unlimited(
    client: httpx.AsyncClient,
    services: Services,
    admin_auth: dict[str, str],
    worker: IssuedKey,
) -> None:
    url = f"/v1/keys/{worker.key.prefix}/limits"
    await client.put(
        url, json={"requests_per_minute": 0, "concurrent_generations": 3}, headers=admin_auth
    )
    assert await _own_limits(services, worker) == RateLimits(0, 3)
    auth = {"Authorization": f"Bearer {worker.secret}"}
    unlimited = await client.post("/v1/images/generations", json=BODY, headers=auth)
    assert unlimited.status_code == 200
    assert "x-ratelimit-limit-requests" not in unlimited.headers
    assert (await client.put(url, json={}, headers=admin_auth)).status_code == 200
    assert await _own_limits(services, worker) == RateLimits(None, None)
    default = await client.post("/v1/images/generations", json=BODY, headers=auth)
    assert default.headers["x-ratelimit-limit-requests"] == "600"  # IMAGEGATE_LIMITS__ default


async def test_bad_limits_are_refused_and_only_admins_may_set_them(
    client: httpx.AsyncClient,
    services: Services,
    admin_auth: dict[str, str],
    worker: IssuedKey,
    auth: dict[str, str],
) -> None:
    url = f"/v1/keys/{worker.key.prefix}/limits"
    denied = await client.put(url, json={"requests_per_minute": 1000}, headers=auth)
    assert denied.status_code == 404
    for bad in ({"requests_per_minute": -1}, {"concurrent_generations": "two"}):
        refused = await client.put(url, json=bad, headers=admin_auth)
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] in {"requests_per_minute", "concurrent_generations"}
    missing = await client.put(
        "/v1/keys/ig_nothere/limits", json={"requests_per_minute": 5}, headers=admin_auth
    )
    assert missing.status_code == 404
    users_have_no_traffic_limits = await client.put(
        "/v1/users/worker/limits", json={"requests_per_minute": 5}, headers=admin_auth
    )
    assert users_have_no_traffic_limits.status_code == 400
    assert await _own_limits(services, worker) == RateLimits(None, None)


async def test_admins_set_and_clear_a_keys_expiry_and_an_expired_key_gets_401(
    client: httpx.AsyncClient, admin_auth: dict[str, str], worker: IssuedKey
) -> None:
    url = f"/v1/keys/{worker.key.prefix}/expiry"
    auth = {"Authorization": f"Bearer {worker.secret}"}
    assert (await client.put(url, json={"expires_at": None}, headers=auth)).status_code == 404
    answer = await client.put(url, json={"expires_at": "2001-01-01T00:00:00"}, headers=admin_auth)
    assert answer.status_code == 200
    assert answer.json() == {"expires_at": "2001-01-01T00:00:00Z"}
    refused = await client.post("/v1/images/generations", json=BODY, headers=auth)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "api_key_expired"
    cleared = await client.put(url, json={"expires_at": None}, headers=admin_auth)
    assert cleared.json() == {"expires_at": None}
    assert (await client.post("/v1/images/generations", json=BODY, headers=auth)).status_code == 200
    unknown = await client.put(
        "/v1/keys/ig_nothere/expiry", json={"expires_at": None}, headers=admin_auth
    )
    assert unknown.status_code == 404
