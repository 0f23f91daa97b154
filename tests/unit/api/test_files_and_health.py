from __future__ import annotations

import httpx
import pytest

from imagegate.api.app import create_app
from imagegate.container import Services, build_services
from imagegate.settings import DatabaseSettings, Settings


async def _one_image_url(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    response = await client.post(
        "/v1/images/generations", json={"prompt": "fox", "size": "256x256"}, headers=auth
    )
    return str(response.json()["data"][0]["url"]).removeprefix("http://testserver")


async def test_files_are_immutable_and_revalidate_with_etag(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    path = await _one_image_url(client, auth)
    first = await client.get(path)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    etag = first.headers["etag"]
    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    head = await client.head(path)
    assert head.status_code == 200
    assert head.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    "path",
    [
        "/files/" + "0" * 64 + ".png",
        "/files/..%2F..%2Fetc%2Fpasswd",
        "/files/%2e%2e%2fimagegate.db",
        "/files/imagegate.db",
    ],
)
async def test_unknown_or_crafted_file_keys_are_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_models_lists_what_can_be_served(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.get("/v1/models", headers=auth)
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["builtin"]
    assert (await client.get("/v1/models")).status_code == 401


async def test_liveness_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {"database": "ok", "storage": "ok"},
        "providers": {"builtin": "ok"},
    }


async def test_readiness_is_503_when_the_database_is_unreachable(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={
            "database": DatabaseSettings(
                url="postgresql+asyncpg://nobody@127.0.0.1:9/none", auto_migrate=False
            )
        }
    )
    services: Services
    async with build_services(unreachable) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["storage"] == "ok"
    assert "database is unavailable" in body["checks"]["database"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/images/generations", {"prompt": "fox", "size": "256x256"}),
        ("POST", "/v1/jobs", {"prompt": "fox", "size": "256x256"}),
        ("GET", "/v1/usage", None),
    ],
)
async def test_requests_are_503_database_unavailable_while_the_database_is_unreachable(
    settings: Settings, method: str, path: str, body: dict[str, str] | None
) -> None:
    unreachable = settings.model_copy(
        update={
            "database": DatabaseSettings(
                url="postgresql+asyncpg://nobody@127.0.0.1:9/none", auto_migrate=False
            )
        }
    )
    async with build_services(unreachable) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.request(
                method, path, json=body, headers={"Authorization": "Bearer ig_" + "x" * 43}
            )
            # with an Idempotency-Key the key is looked up in a middleware, outside the routes
            replayable = await client.request(
                method,
                path,
                json=body,
                headers={"Authorization": "Bearer ig_" + "x" * 43, "Idempotency-Key": "k1"},
            )
    for answer in (response, replayable):
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "2"
        error = answer.json()["error"]
        assert error["code"] == "database_unavailable"
        assert error["type"] == "server_error"
        assert "127.0.0.1" not in error["message"]
