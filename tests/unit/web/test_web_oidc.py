"""OIDC sign-in against a real provider on loopback (tests/support/oidc.py), through the SSRF
guard (loopback allowlisted): state, nonce, PKCE, signature, issuer and audience checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from tests.support.oidc import CLIENT_ID, CLIENT_SECRET, OidcProvider

from imagegate.api.app import create_app
from imagegate.container import Services, build_services
from imagegate.models import Role
from imagegate.settings import OidcSettings, OutboundSettings, Settings, WebSettings
from imagegate.web.session import COOKIE

pytest.importorskip("authlib")


@pytest.fixture
async def provider() -> AsyncIterator[OidcProvider]:
    started = await OidcProvider().start()
    try:
        yield started
    finally:
        await started.stop()


def _settings(tmp_path: Path, provider: OidcProvider, **oidc: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_url="http://testserver",
        outbound=OutboundSettings(allowlist=oidc.pop("allowlist", ["127.0.0.1"])),  # type: ignore[arg-type]
        web=WebSettings(
            oidc=OidcSettings(
                issuer=provider.url,
                client_id=CLIENT_ID,
                client_secret=SecretStr(CLIENT_SECRET),
                label="Sign in with TestID",
                **oidc,  # type: ignore[arg-type]
            )
        ),
    )


@pytest.fixture
async def world(
    tmp_path: Path, provider: OidcProvider, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    extra = getattr(request, "param", {})
    async with build_services(_settings(tmp_path, provider, **extra)) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as app:
            yield services, app


async def _sign_in(app: httpx.AsyncClient, email: str, state: str | None = None) -> httpx.Response:
    """Start at imagegate, sign in at the provider over real HTTP, come back with the code."""
    started = await app.get("/signin/oidc")
    assert started.status_code == 303
    authorize = started.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["nonce"][0]
    assert query["redirect_uri"] == ["http://testserver/signin/oidc/callback"]
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(f"{authorize}&{urlencode({'login_hint': email})}")
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["location"])
    params = parse_qs(back.query)
    if state is not None:
        params["state"] = [state]
    return await app.get(back.path, params={k: v[0] for k, v in params.items()})


async def test_a_pre_mapped_user_signs_in_and_sees_only_their_own_pages(
    world: tuple[Services, httpx.AsyncClient],
) -> None:
    services, app = world
    await services.keys.create("laptop", Role.USER, user="alice@example.com")
    assert "Sign in with TestID" in (await app.get("/")).text
    done = await _sign_in(app, "alice@example.com")
    assert done.status_code == 303, done.text
    assert "httponly" in done.headers["set-cookie"].lower()
    assert COOKIE in app.cookies
    page = await app.get("/usage")
    assert page.status_code == 200
    assert "Usage this month" in page.text
    assert (await app.get("/admin/keys")).status_code == 404  # a user, not an admin
    keys = [k for k in await services.keys.list_keys() if k.user_name == "alice@example.com"]
    assert sorted(k.name for k in keys) == ["laptop", "web-oidc"]
    again = await _sign_in(app, "alice@example.com")  # the same web-oidc key is reused
    assert again.status_code == 303
    assert len(await services.keys.list_keys()) == 2
    web_key = next(k for k in keys if k.name == "web-oidc")
    await services.keys.revoke(web_key.prefix)  # revoking it signs the session out
    assert 'name="api_key"' in (await app.get("/")).text


async def test_an_unknown_email_is_refused_unless_users_may_be_created(
    world: tuple[Services, httpx.AsyncClient],
) -> None:
    services, app = world
    refused = await _sign_in(app, "mallory@example.com")
    assert refused.status_code == 401
    assert "no imagegate account for mallory@example.com" in refused.text
    assert COOKIE not in app.cookies
    assert await services.keys.find_user("mallory@example.com") is None


@pytest.mark.parametrize("world", [{"create_users": True}], indirect=True)
async def test_with_create_users_a_first_sign_in_makes_a_user(
    world: tuple[Services, httpx.AsyncClient],
) -> None:
    services, app = world
    assert (await _sign_in(app, "Bob@Example.com")).status_code == 303
    user = await services.keys.find_user("bob@example.com")
    assert user is not None
    assert user.role is Role.USER


async def test_a_wrong_state_is_refused_and_the_code_never_spent(
    world: tuple[Services, httpx.AsyncClient], provider: OidcProvider
) -> None:
    services, app = world
    await services.keys.create("laptop", Role.USER, user="alice@example.com")
    refused = await _sign_in(app, "alice@example.com", state="forged")
    assert refused.status_code == 400
    assert "does not match" in refused.text
    assert provider.token_requests == 0
    assert COOKIE not in app.cookies


@pytest.mark.parametrize(
    ("claim", "value", "message"),
    [
        ("nonce", "replayed", "nonce does not match"),
        ("aud", "someone-else", "another client"),
        ("iss", "http://127.0.0.1:1", "another issuer"),
        ("exp", 1000, "expired"),
        ("email_verified", False, "did not vouch"),
    ],
)
async def test_an_id_token_with_a_bad_claim_is_refused(
    world: tuple[Services, httpx.AsyncClient],
    provider: OidcProvider,
    claim: str,
    value: object,
    message: str,
) -> None:
    services, app = world
    await services.keys.create("laptop", Role.USER, user="alice@example.com")
    provider.tamper = {claim: value}
    refused = await _sign_in(app, "alice@example.com")
    assert refused.status_code == 401
    assert message in refused.text
    assert COOKIE not in app.cookies


async def test_a_token_signed_by_another_key_is_refused(
    world: tuple[Services, httpx.AsyncClient], provider: OidcProvider
) -> None:
    from joserfc.jwk import RSAKey

    services, app = world
    await services.keys.create("laptop", Role.USER, user="alice@example.com")
    provider.sign_with = RSAKey.generate_key(2048)
    refused = await _sign_in(app, "alice@example.com")
    assert refused.status_code == 401
    assert "signature" in refused.text


@pytest.mark.parametrize("world", [{"allowlist": []}], indirect=True)
async def test_without_an_allowlist_entry_the_ssrf_guard_blocks_a_loopback_provider(
    world: tuple[Services, httpx.AsyncClient],
) -> None:
    _, app = world
    blocked = await app.get("/signin/oidc")
    assert blocked.status_code == 502
    assert "cannot be reached" in blocked.text


async def test_oidc_routes_are_404_when_not_configured(client: httpx.AsyncClient) -> None:
    assert (await client.get("/signin/oidc")).status_code == 404
    assert (await client.get("/signin/oidc/callback")).status_code == 404
    assert "single sign-on" not in (await client.get("/")).text
