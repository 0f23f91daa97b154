"""Security headers on API responses and CORS, closed unless configured (real app, SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.responses import HTMLResponse

from imagegate.api.app import create_app
from imagegate.container import Services, build_services
from imagegate.settings import CorsSettings, Settings

API_CSP = "default-src 'none'; frame-ancestors 'none'"


async def test_api_responses_carry_the_security_headers(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for answer in [
        await client.get("/v1/models", headers=auth),
        await client.get("/v1/models"),  # a 401 too
        await client.get("/healthz"),
        await client.get("/v1/nothing-here", headers=auth),
    ]:
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["content-security-policy"] == API_CSP


async def test_html_pages_keep_their_own_policy(services: Services) -> None:
    app = create_app(services)

    @app.get("/page-with-csp")
    async def page_with_csp() -> HTMLResponse:
        return HTMLResponse("<p>hi</p>", headers={"Content-Security-Policy": "script-src 'self'"})

    @app.get("/page")
    async def page() -> HTMLResponse:
        return HTMLResponse("<p>hi</p>")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        own = await http.get("/page-with-csp")
        assert own.headers.get_list("content-security-policy") == ["script-src 'self'"]
        assert own.headers["x-content-type-options"] == "nosniff"
        bare = await http.get("/page")
        assert "content-security-policy" not in bare.headers  # the web UI sets its own


async def test_cors_is_closed_by_default(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/v1/images/generations",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


@pytest.fixture
async def cors_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        data_dir=tmp_path / "data", cors=CorsSettings(allow_origins=["https://app.example"])
    )
    async with build_services(settings) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_listed_origins_pass_preflight_and_others_do_not(
    cors_client: httpx.AsyncClient,
) -> None:
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    ok = await cors_client.options(
        "/v1/images/generations", headers={"Origin": "https://app.example", **asked}
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-credentials" not in ok.headers
    refused = await cors_client.options(
        "/v1/images/generations", headers={"Origin": "https://evil.example", **asked}
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    simple = await cors_client.get("/healthz", headers={"Origin": "https://app.example"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"


def test_cors_origins_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGATE_CORS__ALLOW_ORIGINS", '["https://a.example"]')
    assert Settings().cors.allow_origins == ["https://a.example"]
