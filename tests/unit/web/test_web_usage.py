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
