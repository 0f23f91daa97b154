"""The Web UI over the embedded defaults: sign in, CSRF, CSP, and owners' images only."""

from __future__ import annotations

import httpx

from imagegate.container import Services
from imagegate.models import Role
from imagegate.web.pages import CSP
from imagegate.web.session import COOKIE


async def _sign_in(client: httpx.AsyncClient, key: str) -> None:
    response = await client.post("/signin", data={"api_key": key})
    assert response.status_code == 303
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=lax" in response.headers["set-cookie"].lower()


async def _generate(client: httpx.AsyncClient, key: str, prompt: str) -> None:
    response = await client.post(
        "/v1/images/generations",
        json={"prompt": prompt, "size": "256x256"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text


async def test_signed_out_visitor_sees_the_sign_in_form_under_a_strict_csp(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert 'name="api_key"' in response.text
    assert response.headers["content-security-policy"] == CSP
    assert "<script>" not in response.text
    assert "style=" not in response.text


async def test_a_wrong_key_is_refused_and_sets_no_cookie(client: httpx.AsyncClient) -> None:
    response = await client.post("/signin", data={"api_key": "ig_nope"})
    assert response.status_code == 401
    assert "not valid" in response.text
    assert COOKIE not in response.headers.get("set-cookie", "")


async def test_signed_in_user_sees_their_gallery_and_can_search_it(
    client: httpx.AsyncClient, user_key: str
) -> None:
    await _generate(client, user_key, "a red fox in snow")
    await _generate(client, user_key, "a blue whale")
    await _sign_in(client, user_key)
    page = await client.get("/")
    assert page.status_code == 200
    assert 'alt="A red fox in snow"' in page.text
    assert 'alt="A blue whale"' in page.text
    found = await client.get("/", params={"q": "whale"})
    assert 'alt="A blue whale"' in found.text
    assert "red fox" not in found.text


async def test_sign_out_needs_the_csrf_token(client: httpx.AsyncClient, user_key: str) -> None:
    await _sign_in(client, user_key)
    refused = await client.post("/signout", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert 'name="q"' in (await client.get("/")).text  # still signed in
    page = (await client.get("/")).text
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert (await client.post("/signout", data={"csrf": token})).status_code == 303
    client.cookies.clear()
    assert 'name="api_key"' in (await client.get("/")).text


async def test_another_users_image_is_404_and_absent_from_their_gallery(
    client: httpx.AsyncClient, services: Services, user_key: str
) -> None:
    await _generate(client, user_key, "a secret lighthouse")
    listed = await client.get("/v1/images", headers={"Authorization": f"Bearer {user_key}"})
    image_id = listed.json()["data"][0]["id"]
    await _sign_in(client, user_key)
    own = await client.get(f"/images/{image_id}")
    assert own.status_code == 200
    assert "a secret lighthouse" in own.text
    other = (await services.keys.create("user-b", Role.USER)).secret
    client.cookies.clear()
    await _sign_in(client, other)
    assert (await client.get(f"/images/{image_id}")).status_code == 404
    assert "lighthouse" not in (await client.get("/")).text


async def test_revoking_the_key_signs_its_session_out(
    client: httpx.AsyncClient, services: Services
) -> None:
    issued = await services.keys.create("user-c", Role.USER)
    await _sign_in(client, issued.secret)
    assert 'name="q"' in (await client.get("/")).text
    await services.keys.revoke(issued.key.prefix)
    assert 'name="api_key"' in (await client.get("/")).text


async def test_gallery_filters_work_without_javascript(
    client: httpx.AsyncClient, user_key: str
) -> None:
    await _generate(client, user_key, "a red fox in snow")
    await _generate(client, user_key, "a blue whale")
    listed = await client.get("/v1/images", headers={"Authorization": f"Bearer {user_key}"})
    whale = next(i["id"] for i in listed.json()["data"] if "whale" in i["prompt"])
    await client.patch(f"/v1/images/{whale}", json={"tags": ["sea"]},
                       headers={"Authorization": f"Bearer {user_key}"})  # fmt: skip
    await _sign_in(client, user_key)
    tagged = (await client.get("/", params={"tag": "sea"})).text
    assert 'alt="A blue whale"' in tagged
    assert "red fox" not in tagged
    assert "red fox" in (await client.get("/", params={"model": "builtin"})).text
    assert "No images match." in (await client.get("/", params={"model": "dall-e-3"})).text
    assert "No images match." in (await client.get("/", params={"from": "2999-01-01"})).text
    bad = await client.get("/", params={"from": "soon"})
    assert bad.status_code == 400
    assert "&#39;from&#39; must be a date" in bad.text or "'from' must be a date" in bad.text
