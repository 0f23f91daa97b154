"""Editing and deleting an image from its page: CSRF-checked, the owner's only."""

from __future__ import annotations

import httpx

from imagegate.container import Services
from imagegate.models import Role


async def _one_image(client: httpx.AsyncClient, key: str) -> str:
    auth = {"Authorization": f"Bearer {key}"}
    made = await client.post(
        "/v1/images/generations",
        json={"prompt": "a quiet harbour", "size": "256x256"},
        headers=auth,
    )
    assert made.status_code == 200, made.text
    return str((await client.get("/v1/images", headers=auth)).json()["data"][0]["id"])


async def _signed_in_token(client: httpx.AsyncClient, key: str) -> str:
    assert (await client.post("/signin", data={"api_key": key})).status_code == 303
    page = (await client.get("/")).text
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def test_owner_edits_alt_text_tags_and_pin(client: httpx.AsyncClient, user_key: str) -> None:
    image_id = await _one_image(client, user_key)
    token = await _signed_in_token(client, user_key)
    form = {"csrf": token, "alt_text": "Boats at dusk", "tags": "sea, boats", "pinned": "on"}
    saved = await client.post(f"/images/{image_id}/edit", data=form)
    assert saved.status_code == 303
    page = (await client.get(f"/images/{image_id}")).text
    assert 'alt="Boats at dusk"' in page
    assert 'value="boats, sea"' in page or 'value="sea, boats"' in page
    assert " checked>" in page


async def test_a_forged_form_changes_nothing(client: httpx.AsyncClient, user_key: str) -> None:
    image_id = await _one_image(client, user_key)
    await _signed_in_token(client, user_key)
    refused = await client.post(f"/images/{image_id}/edit", data={"alt_text": "pwned"})
    assert refused.status_code == 403
    assert "pwned" not in (await client.get(f"/images/{image_id}")).text
    gone = await client.post(f"/images/{image_id}/delete", data={"csrf": "x", "confirm": "yes"})
    assert gone.status_code == 403
    assert (await client.get(f"/images/{image_id}")).status_code == 200


async def test_delete_needs_confirmation_then_removes_the_image(
    client: httpx.AsyncClient, user_key: str
) -> None:
    image_id = await _one_image(client, user_key)
    token = await _signed_in_token(client, user_key)
    await client.post(f"/images/{image_id}/delete", data={"csrf": token})
    assert (await client.get(f"/images/{image_id}")).status_code == 200
    await client.post(f"/images/{image_id}/delete", data={"csrf": token, "confirm": "yes"})
    assert (await client.get(f"/images/{image_id}")).status_code == 404


async def test_another_user_cannot_edit_or_delete_it(
    client: httpx.AsyncClient, services: Services, user_key: str
) -> None:
    image_id = await _one_image(client, user_key)
    other = (await services.keys.create("user-b", Role.USER)).secret
    token = await _signed_in_token(client, other)
    edit = await client.post(f"/images/{image_id}/edit", data={"csrf": token, "alt_text": "x"})
    assert edit.status_code == 404
    delete = await client.post(f"/images/{image_id}/delete", data={"csrf": token, "confirm": "yes"})
    assert delete.status_code == 404
    listed = await client.get("/v1/images", headers={"Authorization": f"Bearer {user_key}"})
    assert listed.json()["data"][0]["alt_text"] == "A quiet harbour"


async def test_the_page_shows_its_facts_and_forms_in_the_body(
    client: httpx.AsyncClient, user_key: str
) -> None:
    image_id = await _one_image(client, user_key)
    await _signed_in_token(client, user_key)
    page = (await client.get(f"/images/{image_id}")).text
    assert "<title>Image · imagegate</title>" in page
    body = page.split("<main>", 1)[1]
    assert 'action="/images/' + image_id + '/edit"' in body
    assert 'action="/images/' + image_id + '/delete"' in body
    assert "<dt>Latency</dt>" in body
    assert "size: 256x256" in body
    assert ": None" not in body  # parameters left unset are not listed
    assert "<dt>Cost</dt><dd>$0.0000</dd>" in body


async def test_the_pages_script_saves_alt_text_in_place(
    client: httpx.AsyncClient, user_key: str
) -> None:
    image_id = await _one_image(client, user_key)
    token = await _signed_in_token(client, user_key)
    scripted = {"Accept": "application/json", "X-CSRF-Token": token}
    form = {"alt_text": "Boats asleep", "tags": "Sea, night, sea"}
    saved = await client.post(f"/images/{image_id}/edit", data=form, headers=scripted)
    assert saved.status_code == 200
    assert saved.json() == {"alt_text": "Boats asleep", "tags": ["sea", "night"], "pinned": False}
    assert 'alt="Boats asleep"' in (await client.get(f"/images/{image_id}")).text
    forged = await client.post(
        f"/images/{image_id}/edit",
        data={"alt_text": "pwned"},
        headers={"Accept": "application/json", "X-CSRF-Token": "forged"},
    )
    assert forged.status_code == 403
    assert forged.json()["error"]["code"] == "csrf_token_invalid"
    assert "pwned" not in (await client.get(f"/images/{image_id}")).text
