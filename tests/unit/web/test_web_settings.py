"""IMAGEGATE_WEB__*: turning the UI off, the session lifetime, OIDC settings from the env."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from imagegate.api.app import create_app
from imagegate.container import build_services
from imagegate.settings import DatabaseSettings, Settings, WebSettings
from imagegate.web.session import COOKIE, Sessions, session_secret


class _SignedLongAgo(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 121


async def test_with_the_ui_off_its_pages_are_404_and_the_api_still_works(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, web=WebSettings(enabled=False))
    async with build_services(settings) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert (await http.get("/")).status_code == 404
            assert (await http.post("/signin", data={"api_key": "x"})).status_code == 404
            assert (await http.get("/admin/keys")).status_code == 404
            assert (await http.get("/healthz")).status_code == 200


async def test_the_session_cookie_lasts_the_configured_time(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, web=WebSettings(session_seconds=120))
    async with build_services(settings) as services:
        created = await services.keys.create("web", user="user-a")
        issued = created.secret
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.post("/signin", data={"api_key": issued})
            assert "max-age=120" in response.headers["set-cookie"].lower()
    secret = session_secret(tmp_path)
    sessions = Sessions(secret, max_age=120)
    # a cookie signed 121 s ago is refused: sign one with a clock set back
    signer = URLSafeTimedSerializer(secret, salt="imagegate-web-session", signer=_SignedLongAgo)
    assert sessions.read(signer.dumps({"key_id": created.key.id, "csrf": "t"})) is None
    assert sessions.read(Sessions(secret).issue(created.key.id)) is not None
    assert COOKIE == "imagegate_session"


def test_oidc_settings_come_from_the_environment_with_a_secret_kept_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMAGEGATE_WEB__OIDC__ISSUER", "https://id.example.com")
    monkeypatch.setenv("IMAGEGATE_WEB__OIDC__CLIENT_ID", "gate")
    monkeypatch.setenv("IMAGEGATE_WEB__OIDC__CLIENT_SECRET", "very-secret")
    monkeypatch.setenv("IMAGEGATE_WEB__OIDC__CREATE_USERS", "true")
    monkeypatch.setenv("IMAGEGATE_WEB__SESSION_SECONDS", "3600")
    web = Settings().web
    assert web.oidc.enabled
    assert web.oidc.create_users
    assert web.session_seconds == 3600
    assert web.oidc.client_secret is not None
    assert web.oidc.client_secret.get_secret_value() == "very-secret"
    assert "very-secret" not in repr(web)


async def test_a_shared_session_secret_signs_in_on_every_gateway_without_the_key_in_the_cookie(
    tmp_path: Path,
) -> None:
    shared_db = DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}")
    web = WebSettings(session_secret="s" * 40)
    gateway_a = Settings(data_dir=tmp_path / "a", database=shared_db, web=web)
    gateway_b = Settings(data_dir=tmp_path / "b", database=shared_db, web=web)
    gateway_c = Settings(data_dir=tmp_path / "c", database=shared_db)  # its own secret
    async with (
        build_services(gateway_a) as a,
        build_services(gateway_b) as b,
        build_services(gateway_c) as c,
    ):
        issued = (await a.keys.create("web", user="user-a")).secret
        cookies = []
        for services in (a, b, c):
            transport = httpx.ASGITransport(app=create_app(services))
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            cookies.append(client)
        try:
            signed_in = await cookies[0].post("/signin", data={"api_key": issued})
            cookie = signed_in.cookies[COOKIE]
            assert issued not in cookie
            assert issued not in str(Sessions("s" * 40).read(cookie))
            for client, signed in zip(cookies, (True, True, False), strict=True):
                page = await client.get("/", headers={"Cookie": f"{COOKIE}={cookie}"})
                assert ('name="api_key"' not in page.text) is signed, (signed, page.status_code)
        finally:
            for client in cookies:
                await client.aclose()


def test_a_short_session_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGATE_WEB__SESSION_SECRET", "too-short")
    with pytest.raises(ValueError, match="session_secret"):
        Settings()
