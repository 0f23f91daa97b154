"""POST /v1/admin/cleanup through the real app, on real SQLite and local storage."""

from __future__ import annotations

import os
import time

import httpx

from imagegate.container import Services
from imagegate.models import OutputFormat, Role
from imagegate.storage.base import content_key


async def test_an_admin_dry_runs_then_cleans_up(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = (await services.keys.create("root", Role.ADMIN)).secret
    headers = {"Authorization": f"Bearer {admin}"}
    key = content_key(b"nobody's bytes", OutputFormat.PNG)
    path = services.settings.storage_root / key[:2] / key[2:4] / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"nobody's bytes")
    stamp = time.time() - 2 * services.settings.cleanup_grace_seconds
    os.utime(path, (stamp, stamp))

    dry = await client.post("/v1/admin/cleanup", json={"dry_run": True}, headers=headers)
    assert dry.status_code == 200
    assert dry.json()["dry_run"] is True
    assert dry.json()["categories"]["orphan_blobs"] == {"count": 1, "bytes": 14}
    assert dry.json()["categories"]["repaired_thumbnails"] == {"count": 0, "bytes": 0}
    assert (dry.json()["repaired_records"], dry.json()["missing_records"]) == ([], [])
    assert path.exists()

    done = await client.post("/v1/admin/cleanup", json={"dry_run": False}, headers=headers)
    assert done.status_code == 200
    assert done.json()["categories"]["orphan_blobs"] == {"count": 1, "bytes": 14}
    assert not path.exists()


async def test_an_empty_body_only_reports_and_a_bad_one_is_refused(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = (await services.keys.create("root", Role.ADMIN)).secret
    headers = {"Authorization": f"Bearer {admin}"}
    empty = await client.post("/v1/admin/cleanup", json={}, headers=headers)
    assert empty.status_code == 200
    assert empty.json()["dry_run"] is True
    bad = await client.post("/v1/admin/cleanup", json={"dry_run": "maybe"}, headers=headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "dry_run"
