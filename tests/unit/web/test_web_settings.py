"""IMAGEGATE_WEB__*: turning the UI off, the session lifetime, OIDC settings from the env."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from imagegate.api.app import create_app
from imagegate.container import build_services
from imagegate.errors import ConfigurationError
from imagegate.settings import Settings, WebSettings, load_settings
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
        issued = (await services.keys.create("web", user="user-a")).secret
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.post("/signin", data={"api_key": issued})
            assert "max-age=120" in response.headers["set-cookie"].lower()
    secret = session_secret(tmp_path)
    sessions = Sessions(secret, max_age=120)
    # a cookie signed 121 s ago is refused: sign one with a clock set back
    signer = URLSafeTimedSerializer(secret, salt="imagegate-web-session", signer=_SignedLongAgo)
    assert sessions.read(signer.dumps({"key": issued, "csrf": "t"})) is None
    assert sessions.read(Sessions(secret).issue(issued)) is not None
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


SHARED = "a-session-secret-every-gateway-shares-0123456789"
_SIGNED_IN = 'action="/signout"'  # the sign-out button: only on pages of a signed-in visitor


async def _signed_in_elsewhere(tmp_path: Path, secrets: tuple[str | None, str | None]) -> bool:
    """Sign in on gateway A and show its cookie to gateway B (same database, data dirs of
    their own, as on two machines): whether B's gallery shows the visitor signed in."""
    database = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
    a, b = (
        Settings(data_dir=tmp_path / name, database={"url": database},  # type: ignore[arg-type]
                 web=WebSettings(session_secret=secret))  # type: ignore[arg-type]
        for name, secret in zip(("a", "b"), secrets, strict=True)
    )  # fmt: skip
    async with build_services(a) as on_a, build_services(b) as on_b:
        issued = (await on_a.keys.create("web", user="user-a")).secret
        apps = [httpx.ASGITransport(app=create_app(s)) for s in (on_a, on_b)]
        async with (
            httpx.AsyncClient(transport=apps[0], base_url="http://testserver") as gateway_a,
            httpx.AsyncClient(transport=apps[1], base_url="http://testserver") as gateway_b,
        ):
            signed_in = await gateway_a.post("/signin", data={"api_key": issued})
            gateway_b.cookies.set(COOKIE, signed_in.cookies[COOKIE])
            assert _SIGNED_IN in (await gateway_a.get("/")).text
            page = await gateway_b.get("/")
            assert page.status_code == 200
            return _SIGNED_IN in page.text


async def test_gateways_sharing_a_session_secret_accept_each_others_sign_ins(
    tmp_path: Path,
) -> None:
    assert await _signed_in_elsewhere(tmp_path, (SHARED, SHARED))
    assert not (tmp_path / "a" / "web-session-secret").exists()  # nothing made on disk


async def test_gateways_with_secrets_of_their_own_refuse_each_others_sign_ins(
    tmp_path: Path,
) -> None:
    assert not await _signed_in_elsewhere(tmp_path, (None, None))  # each made its own


def test_a_short_session_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGATE_WEB__SESSION_SECRET", "too-short")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "IMAGEGATE_WEB__SESSION_SECRET" in caught.value.message
    assert "too-short" not in caught.value.message  # a secret is never echoed
