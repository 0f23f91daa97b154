"""The cache, cost estimates and quotas as HTTP clients see them (builtin model, real SQLite)."""

from __future__ import annotations

import httpx
import pytest
from tests.support import DataDir

from imagegate.container import Services
from imagegate.models import Limits, Role

BODY = {"model": "builtin", "prompt": "a red fox", "size": "256x256"}


async def _post(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    headers: dict[str, str] | None = None,
    **body: object,
) -> httpx.Response:
    return await client.post(
        "/v1/images/generations", json={**BODY, **body}, headers={**auth, **(headers or {})}
    )


async def test_the_second_identical_request_is_a_hit_with_the_same_url(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    first = await _post(client, auth)
    again = await _post(client, auth, prompt="a  red fox ")
    assert (first.headers["x-imagegate-cache"], again.headers["x-imagegate-cache"]) == (
        "miss",
        "hit",
    )
    assert again.json()["data"] == first.json()["data"]
    assert data_dir.rows("SELECT outcome FROM generations ORDER BY created_at") == [
        ("generated",),
        ("cache_hit",),
    ]


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Cache-Control": "no-cache"}, {}, "miss"),
        ({"Cache-Control": "max-age=0, no-store"}, {}, "bypass"),
        ({}, {"cache": "refresh"}, "miss"),
        ({}, {"cache": "bypass"}, "bypass"),
        ({"Cache-Control": "no-cache"}, {"cache": "bypass"}, "bypass"),
    ],
)
async def test_clients_can_ask_for_a_fresh_image(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    headers: dict[str, str],
    body: dict[str, object],
    status: str,
) -> None:
    await _post(client, auth)
    response = await _post(client, auth, headers, **body)
    assert response.status_code == 200
    assert response.headers["x-imagegate-cache"] == status


async def test_estimates_price_a_request_without_generating(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir
) -> None:
    before = await client.post("/v1/images/estimate", json={**BODY, "n": 3}, headers=auth)
    assert before.status_code == 200
    assert before.json() == {
        "model": "builtin",
        "n": 3,
        "size": "256x256",
        "quality": "auto",
        "unit_cost_usd": 0.0,
        "estimated_cost_usd": 0.0,
        "list_cost_usd": 0.0,
        "cached": False,
    }
    assert data_dir.count("generations") == 0
    await _post(client, auth, n=3)
    after = await client.post("/v1/images/estimate", json={**BODY, "n": 3}, headers=auth)
    assert after.json()["cached"] is True
    bad = await client.post("/v1/images/estimate", json={**BODY, "n": 0}, headers=auth)
    assert bad.status_code == 400


async def test_an_exhausted_quota_is_a_429_with_retry_after(
    client: httpx.AsyncClient, services: Services
) -> None:
    issued = await services.keys.create("limited", limits=Limits(images_per_minute=1))
    auth = {"Authorization": f"Bearer {issued.secret}"}
    assert (await _post(client, auth, prompt="one")).status_code == 200
    refused = await _post(client, auth, prompt="two")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert (await _post(client, auth, prompt="one")).headers["x-imagegate-cache"] == "hit"


async def test_usage_shows_the_callers_budget_and_what_is_left(
    client: httpx.AsyncClient, services: Services
) -> None:
    issued = await services.keys.create(
        "budgeted", limits=Limits(budget_micro_usd_day=2_500_000, images_per_minute=10)
    )
    auth = {"Authorization": f"Bearer {issued.secret}"}
    await _post(client, auth, n=2)
    budget = (await client.get("/v1/usage", headers=auth)).json()["budget"]
    by_window = {b["window"]: b for b in budget}
    assert by_window["day"]["limit_usd"] == "2.500000"
    assert by_window["day"]["remaining_usd"] == "2.500000"  # the builtin model is free
    assert by_window["minute"]["images_limit"] == 10
    assert by_window["minute"]["images"] == 2
    assert {b["applies_to"] for b in budget} == {"key"}


async def test_admins_set_limits_over_the_api_and_others_cannot(
    client: httpx.AsyncClient, services: Services, auth: dict[str, str]
) -> None:
    admin = await services.keys.create("root", Role.ADMIN)
    admin_auth = {"Authorization": f"Bearer {admin.secret}"}
    target = await services.keys.create("worker")
    url = f"/v1/keys/{target.key.prefix}/limits"
    denied = await client.put(url, json={"images_per_minute": 1}, headers=auth)
    assert denied.status_code == 404
    ok = await client.put(url, json={"images_per_minute": 1}, headers=admin_auth)
    assert ok.status_code == 200
    worker = {"Authorization": f"Bearer {target.secret}"}
    assert (await _post(client, worker, prompt="first")).status_code == 200
    assert (await _post(client, worker, prompt="second")).status_code == 429
    user_limits = await client.put(
        "/v1/users/worker/limits", json={"budget_usd_day": -1}, headers=admin_auth
    )
    assert user_limits.status_code == 400
    missing = await client.put("/v1/users/nobody/limits", json={}, headers=admin_auth)
    assert missing.status_code == 404
