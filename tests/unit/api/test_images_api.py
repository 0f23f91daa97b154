"""The image library over HTTP on the embedded defaults (SQLite, local files, builtin model)."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image
from tests.support import DataDir

from imagegate.container import Services
from imagegate.models import Role


async def _generate(
    client: httpx.AsyncClient, auth: dict[str, str], prompt: str, n: int = 1, **extra: object
) -> str:
    response = await client.post(
        "/v1/images/generations",
        json={"prompt": prompt, "size": "256x256", "n": n, **extra},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-imagegate-generation-id"]


@pytest.fixture
async def other_auth(services: Services) -> dict[str, str]:
    key = await services.keys.create("user-b", Role.USER)
    return {"Authorization": f"Bearer {key.secret}"}


async def test_list_shows_the_callers_images_newest_first_with_urls_that_work(
    client: httpx.AsyncClient, auth: dict[str, str], services: Services
) -> None:
    await _generate(client, auth, "a red fox in snow")
    await _generate(client, auth, "a blue whale, 8k, masterpiece --ar 16:9")
    await services.thumbnails.idle()  # thumbnails and placeholders come just after the answer
    body = (await client.get("/v1/images", headers=auth)).json()
    assert [item["prompt"] for item in body["data"]] == [
        "a blue whale, 8k, masterpiece --ar 16:9",
        "a red fox in snow",
    ]
    assert body["has_more"] is False
    newest = body["data"][0]
    assert newest["alt_text"] == "A blue whale"
    assert newest["placeholder"].startswith("data:image/")
    thumbnail = await client.get(newest["thumbnail_url"])
    with Image.open(io.BytesIO(thumbnail.content)) as image:
        assert (image.format, image.size) == ("WEBP", (300, 300))
    full = await client.get(newest["url"])
    with Image.open(io.BytesIO(full.content)) as image:
        assert (image.format, image.size) == ("PNG", (256, 256))


async def test_pages_follow_the_cursor_without_repeats(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _generate(client, auth, "five lighthouses", n=5)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/v1/images", params=params, headers=auth)).json()
        seen += [item["id"] for item in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5


async def test_one_image_carries_its_request(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    generation_id = await _generate(client, auth, "a quiet harbour", quality="standard")
    (item,) = (await client.get("/v1/images", headers=auth)).json()["data"]
    detail = (await client.get(f"/v1/images/{item['id']}", headers=auth)).json()
    assert detail["generation_id"] == generation_id
    assert detail["model"] == "builtin"
    assert detail["provider"] == "builtin"
    assert detail["outcome"] == "generated"
    assert detail["parameters"]["size"] == "256x256"
    assert detail["cost_usd"] == "0.000000"
    assert detail["latency_ms"] >= 0
    assert (detail["width"], detail["height"], detail["mime"]) == (256, 256, "image/png")


async def test_patch_changes_alt_text_tags_and_pin_and_tag_filter_finds_it(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _generate(client, auth, "two cats", n=2)
    first, second = (await client.get("/v1/images", headers=auth)).json()["data"]
    response = await client.patch(
        f"/v1/images/{first['id']}",
        json={"alt_text": "Two cats on a sofa", "tags": [" Pets ", "cats", "pets"], "pinned": True},
        headers=auth,
    )
    assert response.status_code == 200
    changed = response.json()
    assert (changed["alt_text"], changed["tags"], changed["pinned"]) == (
        "Two cats on a sofa",
        ["pets", "cats"],
        True,
    )
    tagged = (await client.get("/v1/images", params={"tag": "pets"}, headers=auth)).json()
    assert [item["id"] for item in tagged["data"]] == [first["id"]]
    reset = await client.patch(f"/v1/images/{first['id']}", json={"alt_text": ""}, headers=auth)
    assert reset.json()["alt_text"] == "Two cats"
    assert reset.json()["tags"] == ["pets", "cats"]
    untouched = (await client.get(f"/v1/images/{second['id']}", headers=auth)).json()
    assert (untouched["tags"], untouched["pinned"]) == ([], False)


async def test_delete_removes_the_record_and_keeps_bytes_another_record_uses(
    client: httpx.AsyncClient, auth: dict[str, str], data_dir: DataDir, services: Services
) -> None:
    await _generate(client, auth, "a lone tree", seed=7)
    await _generate(client, auth, "a lone tree", seed=7)  # a cache hit: same bytes
    await services.thumbnails.idle()
    hit, original = (await client.get("/v1/images", headers=auth)).json()["data"]
    assert (hit["outcome"], original["outcome"]) == ("cache_hit", "generated")
    assert hit["url"] == original["url"]
    files_before = len(data_dir.stored_files())
    assert (await client.delete(f"/v1/images/{original['id']}", headers=auth)).status_code == 204
    assert (await client.get(f"/v1/images/{original['id']}", headers=auth)).status_code == 404
    assert (await client.get(hit["url"])).status_code == 200
    assert len(data_dir.stored_files()) == files_before
    assert (await client.delete(f"/v1/images/{hit['id']}", headers=auth)).status_code == 204
    assert (await client.get(hit["url"])).status_code == 404
    assert (await client.get(hit["thumbnail_url"])).status_code == 404
    assert (await client.get("/v1/images", headers=auth)).json()["data"] == []


async def test_another_users_image_and_generation_are_not_found(
    client: httpx.AsyncClient, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    generation_id = await _generate(client, auth, "private sketch")
    (item,) = (await client.get("/v1/images", headers=auth)).json()["data"]
    for method, path in [
        ("GET", f"/v1/images/{item['id']}"),
        ("PATCH", f"/v1/images/{item['id']}"),
        ("DELETE", f"/v1/images/{item['id']}"),
        ("GET", f"/v1/generations/{generation_id}"),
    ]:
        kwargs: dict[str, object] = {"json": {"pinned": True}} if method == "PATCH" else {}
        response = await client.request(method, path, headers=other_auth, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
    assert (await client.get("/v1/images", headers=other_auth)).json()["data"] == []
    listed = await client.get("/v1/images", params={"user": "user-a"}, headers=other_auth)
    assert listed.status_code == 404
    assert (await client.get(f"/v1/images/{item['id']}", headers=auth)).status_code == 200


async def test_generation_lists_its_images(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    generation_id = await _generate(client, auth, "three moons", n=3)
    body = (await client.get(f"/v1/generations/{generation_id}", headers=auth)).json()
    assert body["id"] == generation_id
    assert body["prompt"] == "three moons"
    assert body["outcome"] == "generated"
    assert len(body["images"]) == 3
    assert all(image["generation_id"] == generation_id for image in body["images"])


async def test_an_admin_sees_everyones_images_or_one_users(
    client: httpx.AsyncClient, services: Services, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    await _generate(client, auth, "from a")
    await _generate(client, other_auth, "from b")
    admin = {"Authorization": f"Bearer {(await services.keys.create('root', Role.ADMIN)).secret}"}
    everyone = (await client.get("/v1/images", headers=admin)).json()["data"]
    assert sorted(item["prompt"] for item in everyone) == ["from a", "from b"]
    only_b = (await client.get("/v1/images", params={"user": "user-b"}, headers=admin)).json()
    assert [item["prompt"] for item in only_b["data"]] == ["from b"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 201}, "limit"),
        ({"limit": 0}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"outcome": "exploded"}, "outcome"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
        ({"q": "!!!"}, "q"),
    ],
)
async def test_bad_list_parameters_are_400s_in_the_openai_shape(
    client: httpx.AsyncClient, auth: dict[str, str], params: dict[str, object], param: str
) -> None:
    response = await client.get("/v1/images", params=params, headers=auth)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert param in (error["param"] or "")


@pytest.mark.parametrize(
    "body",
    [{"tags": ["fine", "not ok!"]}, {"tags": ["x"] * 21}, {"pinned": "yes"}, {"colour": "red"}],
)
async def test_bad_patches_are_400s(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, object]
) -> None:
    await _generate(client, auth, "a kite")
    (item,) = (await client.get("/v1/images", headers=auth)).json()["data"]
    response = await client.patch(f"/v1/images/{item['id']}", json=body, headers=auth)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_library_routes_do_not_shadow_the_openai_routes(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    estimate = await client.post("/v1/images/estimate", json={"prompt": "x"}, headers=auth)
    assert estimate.status_code == 200
    assert (await client.get("/v1/images/generations", headers=auth)).status_code == 404
    assert (await client.get("/v1/images")).status_code == 401
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"get", "patch", "delete"} <= set(paths["/v1/images/{image_id}"])
    assert "get" in paths["/v1/generations/{generation_id}"]


async def test_a_thumbnail_not_made_yet_or_lost_is_made_when_first_fetched(
    client: httpx.AsyncClient, auth: dict[str, str], services: Services, data_dir: DataDir
) -> None:
    await _generate(client, auth, "a lighthouse at dusk", size="512x512")
    await services.thumbnails.idle()
    image = (await client.get("/v1/images", headers=auth)).json()["data"][0]
    thumbnail_key = image["thumbnail_url"].rpartition("/")[2]
    lost = [path for path in data_dir.stored_files() if path.name == thumbnail_key]
    assert len(lost) == 1
    lost[0].unlink()
    again = await client.get(image["thumbnail_url"])
    assert again.status_code == 200
    with Image.open(io.BytesIO(again.content)) as thumb:
        assert (thumb.format, thumb.size) == ("WEBP", (300, 300))
    assert thumbnail_key in {path.name for path in data_dir.stored_files()}
    unknown = image["thumbnail_url"].replace(thumbnail_key, "0" * 64 + ".webp")
    assert (await client.get(unknown)).status_code == 404
