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


def _csrf(page: str) -> str:
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


ADMIN_PAGES = ("/admin/keys", "/admin/users", "/admin/health", "/admin/cleanup")


async def test_every_admin_page_is_404_for_a_user_and_when_signed_out(
    client: httpx.AsyncClient, services: Services, user_key: str
) -> None:
    user = next(k for k in await services.keys.list_keys() if k.user_name == "user-a")
    pages = (*ADMIN_PAGES, f"/admin/keys/{user.prefix}", "/admin/users/user-a")
    for path in pages:
        assert (await client.get(path)).status_code == 404, path
    token = await _signed_in_token(client, user_key)
    for path in pages:
        assert (await client.get(path)).status_code == 404, path
        posted = await client.post(path, data={"csrf": token, "action": "run", "confirm": "yes"})
        assert posted.status_code == 404, path  # GET-only pages too: not a 405
        for method in ("PUT", "PATCH", "DELETE"):
            assert (await client.request(method, path)).status_code == 404, (method, path)
    assert (await services.keys.list_keys())[0].limits.any is False


async def test_an_admin_is_told_which_methods_a_page_takes(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = (await services.keys.create("root", Role.ADMIN)).secret
    token = await _signed_in_token(client, admin)
    health = await client.post("/admin/health", data={"csrf": token})
    assert health.status_code == 405
    assert health.headers["allow"] == "GET"
    keys = await client.delete("/admin/keys")
    assert keys.status_code == 405
    assert keys.headers["allow"] == "GET, POST"
    assert (await client.post("/admin/nothing-here", data={"csrf": token})).status_code == 404


async def test_admin_sets_a_keys_budget_and_limits_and_the_api_enforces_them(
    client: httpx.AsyncClient, services: Services, user_key: str
) -> None:
    admin = (await services.keys.create("root", Role.ADMIN)).secret
    token = await _signed_in_token(client, admin)
    user = next(k for k in await services.keys.list_keys() if k.user_name == "user-a")
    page = await client.get(f"/admin/keys/{user.prefix}")
    assert page.status_code == 200
    assert 'for="budget_usd_day"' in page.text
    form = {"budget_usd_day": "0.5", "images_per_day": "1", "requests_per_minute": "7"}
    refused = await client.post(f"/admin/keys/{user.prefix}", data={"csrf": "wrong", **form})
    assert refused.status_code == 403
    assert not (await services.keys.list_keys())[0].limits.any
    bad = await client.post(
        f"/admin/keys/{user.prefix}", data={"csrf": token, "budget_usd_day": "lots"}
    )
    assert bad.status_code == 400
    assert "amount in USD" in bad.text
    saved = await client.post(f"/admin/keys/{user.prefix}", data={"csrf": token, **form})
    assert saved.status_code == 200
    assert "Limits saved." in saved.text
    assert 'value="0.5"' in saved.text
    assert 'value="7"' in saved.text
    key = next(k for k in await services.keys.list_keys() if k.prefix == user.prefix)
    assert key.limits.budget_micro_usd_day == 500_000
    assert key.limits.images_per_day == 1
    assert key.rate_limits.requests_per_minute == 7
    assert "$0.5/day, 1 images/day, 7 requests/min" in (await client.get("/admin/keys")).text
    api = {"Authorization": f"Bearer {user_key}"}
    body = {"prompt": "a paper boat", "size": "256x256", "model": "builtin"}
    assert (await client.post("/v1/images/generations", json=body, headers=api)).is_success
    again = {**body, "prompt": "another paper boat"}
    over = await client.post("/v1/images/generations", json=again, headers=api)
    assert over.status_code == 429


async def test_admin_lists_users_with_keys_spend_and_sets_a_users_budget(
    client: httpx.AsyncClient, services: Services, user_key: str
) -> None:
    await services.keys.create("second", Role.USER, user="user-a")
    admin = (await services.keys.create("root", Role.ADMIN)).secret
    api = {"Authorization": f"Bearer {user_key}"}
    body = {"prompt": "a paper boat", "size": "256x256", "model": "builtin", "n": 2}
    assert (await client.post("/v1/images/generations", json=body, headers=api)).is_success
    token = await _signed_in_token(client, admin)
    page = (await client.get("/admin/users")).text
    row = page.split("<td>user-a</td>", 1)[1].split("</tr>", 1)[0]
    assert "<td>user</td><td>2</td>" in row  # role, two active keys
    assert "<td>2</td>" in row  # images this month
    assert "unlimited" in row
    saved = await client.post(
        "/admin/users/user-a", data={"csrf": token, "budget_usd_month": "12.25"}
    )
    assert "Limits saved." in saved.text
    assert "$12.25/month" in (await client.get("/admin/users")).text
    assert (await client.get("/admin/users/nobody")).status_code == 404


async def test_health_page_shows_breakers_in_words_and_queue_depths(
    client: httpx.AsyncClient, services: Services, user_key: str
) -> None:
    admin = (await services.keys.create("root", Role.ADMIN)).secret
    await _signed_in_token(client, admin)
    api = {"Authorization": f"Bearer {user_key}", "Prefer": "respond-async"}
    body = {"prompt": "a queued boat", "size": "256x256", "model": "builtin"}
    submitted = await client.post("/v1/jobs", json=body, headers=api)
    assert submitted.status_code in (200, 201, 202), submitted.text
    router = services.providers._router  # drive one real breaker open
    target = next(iter(router.breaker_states()))
    for _ in range(10):
        router._breakers[target].record_failure()
    page = await client.get("/admin/health")
    assert page.status_code == 200
    assert "✓ ready" in page.text or "◐ degraded" in page.text
    assert "<td>database</td><td>✓ ok</td>" in page.text
    assert f"<code>{target}</code></td><td>✕ open" in page.text
    queues = page.text.split("Queue depths", 1)[1]
    assert "<td>builtin</td>" in queues
    depths = await services.jobs.depths(await services.keys.authenticate(f"Bearer {admin}"))
    builtin = depths.get("builtin", {})
    assert sum(builtin.values()) <= 1


async def test_cleanup_previews_then_runs_only_when_confirmed(
    client: httpx.AsyncClient, services: Services
) -> None:
    import os
    import time

    from imagegate.models import OutputFormat
    from imagegate.storage.base import content_key

    admin = (await services.keys.create("root", Role.ADMIN)).secret
    token = await _signed_in_token(client, admin)
    key = content_key(b"nobody's bytes", OutputFormat.PNG)
    path = services.settings.storage_root / key[:2] / key[2:4] / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"nobody's bytes")
    stamp = time.time() - 2 * services.settings.cleanup_grace_seconds
    os.utime(path, (stamp, stamp))
    assert "Preview (dry run)" in (await client.get("/admin/cleanup")).text
    assert (await client.post("/admin/cleanup", data={"csrf": "x"})).status_code == 403
    preview = await client.post("/admin/cleanup", data={"csrf": token, "action": "preview"})
    assert "nothing was removed" in preview.text
    assert "<td>Orphan files (no image refers to them)</td><td>1</td><td>14 bytes</td>" in (
        preview.text
    )
    assert path.exists()
    unconfirmed = await client.post("/admin/cleanup", data={"csrf": token, "action": "run"})
    assert unconfirmed.status_code == 400
    assert path.exists()
    done = await client.post(
        "/admin/cleanup", data={"csrf": token, "action": "run", "confirm": "yes"}
    )
    assert "Cleanup done" in done.text
    assert not path.exists()
