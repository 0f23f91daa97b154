"""The usage page counts only the caller's own generations."""

from __future__ import annotations

import httpx

from imagegate.container import Services
from imagegate.models import Role


async def test_usage_shows_own_images_per_model_and_a_labelled_chart(
    client: httpx.AsyncClient, services: Services, user_key: str
) -> None:
    body = {"prompt": "a paper boat", "size": "256x256", "model": "builtin", "n": 2}
    auth = {"Authorization": f"Bearer {user_key}"}
    assert (await client.post("/v1/images/generations", json=body, headers=auth)).is_success
    assert (await client.post("/v1/images/generations", json=body, headers=auth)).is_success
    assert (await client.post("/signin", data={"api_key": user_key})).status_code == 303
    page = (await client.get("/usage")).text
    assert "<dt>Images</dt><dd>4</dd>" in page
    assert "<dt>Cache hit rate</dt><dd>50%</dd>" in page
    assert "<td>builtin</td><td>2</td><td>4</td>" in page
    assert "<title>" in page  # each bar says its figures in text, not colour alone
    other = (await services.keys.create("user-b", Role.USER)).secret
    client.cookies.clear()
    assert (await client.post("/signin", data={"api_key": other})).status_code == 303
    assert "<dt>Images</dt><dd>0</dd>" in (await client.get("/usage")).text


async def test_usage_shows_budget_remaining_and_when_it_resets(
    client: httpx.AsyncClient, services: Services
) -> None:
    from imagegate.models import Limits

    issued = await services.keys.create("limited", Role.USER)
    await services.keys.set_limits(
        issued.key.prefix, Limits(budget_micro_usd_month=2_000_000, images_per_day=10)
    )
    await services.keys.set_user_limits("limited", Limits(budget_micro_usd_day=500_000))
    auth = {"Authorization": f"Bearer {issued.secret}"}
    body = {"prompt": "a paper boat", "size": "256x256", "model": "builtin", "n": 3}
    assert (await client.post("/v1/images/generations", json=body, headers=auth)).is_success
    assert (await client.post("/signin", data={"api_key": issued.secret})).status_code == 303
    page = (await client.get("/usage")).text
    budget = page.split("<h2>Budget remaining</h2>", 1)[1].split("</table>", 1)[0]
    assert "<td>This API key: spend this month (UTC)</td><td>$2.000000</td>" in budget
    assert "<td>This API key: images today (UTC)</td><td>10 images</td><td>3 images</td>" in (
        budget
    )
    assert "<strong>7 images</strong>" in budget
    assert "30% used" in budget  # the share in words, not only as a filled bar
    assert "<td>Your account: spend today (UTC)</td><td>$0.500000</td>" in budget
    assert " UTC (in " in budget  # the reset moment and how long until it


async def test_usage_without_limits_says_spending_is_unlimited(
    client: httpx.AsyncClient, user_key: str
) -> None:
    assert (await client.post("/signin", data={"api_key": user_key})).status_code == 303
    page = (await client.get("/usage")).text
    assert "spending is unlimited" in page
    assert 'aria-labelledby="images-chart-title"' in page
