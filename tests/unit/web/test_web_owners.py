"""Whose things each page and fragment shows: a user only ever their own; an admin their
own too unless they ask for one user's (``user=<name>``) or everyone's (``user=*``)."""

from __future__ import annotations

import httpx

from imagegate.container import Services
from imagegate.models import Role

SECRET = "a secret lighthouse"


async def _sign_in(client: httpx.AsyncClient, key: str) -> str:
    client.cookies.clear()
    assert (await client.post("/signin", data={"api_key": key})).status_code == 303
    page = (await client.get("/generate")).text
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def _generate(client: httpx.AsyncClient, key: str, prompt: str) -> str:
    auth = {"Authorization": f"Bearer {key}"}
    made = await client.post(
        "/v1/images/generations", json={"prompt": prompt, "size": "256x256"}, headers=auth
    )
    assert made.status_code == 200, made.text
    return str((await client.get("/v1/images", headers=auth)).json()["data"][0]["id"])


async def test_no_page_or_fragment_shows_another_users_images_jobs_or_usage(
    client: httpx.AsyncClient, services: Services, user_key: str
) -> None:
    image_id = await _generate(client, user_key, SECRET)
    token = await _sign_in(client, user_key)
    job = await client.post(
        "/web/jobs",
        data={"prompt": "a hidden harbour", "size": "256x256"},
        headers={"X-CSRF-Token": token},
    )
    assert job.status_code == 202
    job_id = job.json()["id"]
    assert "<dt>Images</dt><dd>1</dd>" in (await client.get("/usage")).text

    bob = (await services.keys.create("bob", Role.USER)).secret
    await _sign_in(client, bob)
    for path, params in (
        ("/", {}),
        ("/", {"q": "lighthouse"}),
        ("/", {"user": "user-a"}),
        ("/", {"user": "*"}),
        ("/web/images", {}),
        ("/web/images", {"user": "user-a", "q": "lighthouse"}),
        ("/web/images", {"user": "*"}),
        ("/usage", {}),
        ("/usage", {"user": "user-a"}),
        ("/generate", {}),
    ):
        answer = await client.get(path, params=params)
        assert answer.status_code == 200, (path, params)
        assert "secret" not in answer.text.lower(), (path, params)
        assert image_id not in answer.text, (path, params)
    assert "<dt>Images</dt><dd>0</dd>" in (await client.get("/usage")).text
    for path in (f"/images/{image_id}", f"/web/jobs/{job_id}", f"/web/jobs/{job_id}/events"):
        assert (await client.get(path)).status_code == 404, path
    bob_token = await _sign_in(client, bob)
    for path in (f"/images/{image_id}/edit", f"/images/{image_id}/delete"):
        posted = await client.post(
            path, data={"csrf": bob_token, "alt_text": "x", "confirm": "yes"}
        )
        assert posted.status_code == 404, path


async def test_an_admins_gallery_and_usage_are_their_own_unless_they_ask(
    client: httpx.AsyncClient, services: Services, user_key: str
) -> None:
    await _generate(client, user_key, SECRET)
    admin = (await services.keys.create("root", Role.ADMIN)).secret
    await _generate(client, admin, "an admin's drum")
    await _sign_in(client, admin)

    own = (await client.get("/")).text
    assert "drum" in own
    assert "lighthouse" not in own
    assert [i["prompt"] for i in (await client.get("/web/images")).json()["images"]] == [
        "an admin's drum"
    ]
    usage = (await client.get("/usage")).text
    assert "<dt>Images</dt><dd>1</dd>" in usage

    alices = (await client.get("/", params={"user": "user-a"})).text
    assert "lighthouse" in alices
    assert "drum" not in alices
    everyone = await client.get("/web/images", params={"user": "*"})
    assert sorted(i["prompt"] for i in everyone.json()["images"]) == [SECRET, "an admin's drum"]
    missing = await client.get("/", params={"user": "nobody"})
    assert missing.status_code == 404
    assert "No user" in missing.text
