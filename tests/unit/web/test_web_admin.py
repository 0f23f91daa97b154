"""Admin key pages: admins create and revoke keys; for everyone else the pages do not exist."""

from __future__ import annotations

import httpx

from imagegate.container import Services
from imagegate.models import Role


async def _signed_in_token(client: httpx.AsyncClient, key: str) -> str:
    assert (await client.post("/signin", data={"api_key": key})).status_code == 303
    page = (await client.get("/")).text
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def test_a_non_admin_gets_404(client: httpx.AsyncClient, user_key: str) -> None:
    assert (await client.get("/admin/keys")).status_code == 404
    token = await _signed_in_token(client, user_key)
    assert (await client.get("/admin/keys")).status_code == 404
    assert 'href="/admin/keys"' not in (await client.get("/")).text
    made = await client.post("/admin/keys", data={"csrf": token, "name": "sneaky"})
    assert made.status_code == 404


async def test_admin_creates_a_key_shown_once_and_revokes_it(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = (await services.keys.create("root", Role.ADMIN)).secret
    token = await _signed_in_token(client, admin)
    assert 'href="/admin/keys"' in (await client.get("/")).text
    page = await client.post("/admin/keys", data={"csrf": token, "name": "carol"})
    secret = page.text.split('<code id="new-key">', 1)[1].split("<", 1)[0]
    api = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/v1/images", headers=api)).status_code == 200
    assert secret not in (await client.get("/admin/keys")).text
    carol = next(k for k in await services.keys.list_keys() if k.user_name == "carol")
    form = {"csrf": token, "action": "revoke", "prefix": carol.prefix}
    revoked = await client.post("/admin/keys", data=form)
    assert "Key revoked." in revoked.text
    assert (await client.get("/v1/images", headers=api)).status_code == 401
