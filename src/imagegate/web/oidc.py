"""Optional OIDC sign-in to the Web UI (authorization code flow with PKCE, state and nonce).

On when ``IMAGEGATE_WEB__OIDC__ISSUER`` and ``__CLIENT_ID`` are set; otherwise both routes are
404. ``authlib`` (the ``oidc`` extra) is imported only when a sign-in starts; it brings
``joserfc``, which verifies the ID token's signature against the provider's JWKS.

Every call to the provider (discovery document, JWKS, token endpoint) goes through the SSRF
guard's client (``services.outbound``): a provider on a private address or loopback needs an
``IMAGEGATE_OUTBOUND__ALLOWLIST`` entry, like a webhook receiver would.

Mapping: the ID token's ``email`` claim, only when ``email_verified`` is true, names the
imagegate user. An unknown email is refused unless ``create_users`` is set (then a user with
the role ``user`` is made). The session refers to the user's ``web-oidc`` API key (created on
first sign-in, its secret thrown away): the key's limits apply in the UI, and revoking it signs
every OIDC session of that user out.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from imagegate.errors import ImagegateError, NotFound
from imagegate.models import ApiKey
from imagegate.settings import OidcSettings
from imagegate.web.pages import _render, _services, _sessions
from imagegate.web.session import COOKIE, session_secret

router = APIRouter(include_in_schema=False)
FLOW_COOKIE = "imagegate_oidc"
FLOW_SECONDS = 600
OIDC_KEY_NAME = "web-oidc"
MAX_DOCUMENT_BYTES = 256 * 1024
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
CLOCK_SKEW_SECONDS = 60


class OidcFailed(Exception):
    """The sign-in cannot go on; the message is shown to the person signing in."""


@dataclass(frozen=True, slots=True)
class Provider:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


def _settings(request: Request) -> OidcSettings:
    oidc = _services(request).settings.web.oidc
    if not oidc.enabled:
        raise NotFound("Unknown route.")
    return oidc


def _redirect_url(request: Request, oidc: OidcSettings) -> str:
    return oidc.redirect_url or f"{_services(request).settings.base_url}/signin/oidc/callback"


def _flow_signer(request: Request) -> URLSafeTimedSerializer:
    settings = _services(request).settings
    secret = session_secret(settings.data_dir, settings.web.session_secret)
    return URLSafeTimedSerializer(secret, salt="imagegate-web-oidc-flow")


async def _fetch_json(
    request: Request, oidc: OidcSettings, url: str, param: str, **kw: Any
) -> dict[str, Any]:
    try:
        response = await _services(request).outbound.request(
            kw.pop("method", "GET"),
            url,
            param=param,
            seconds=oidc.timeout_seconds,
            max_bytes=MAX_DOCUMENT_BYTES,
            **kw,
        )
    except ImagegateError as exc:  # the SSRF guard refused the URL
        raise OidcFailed(f"The sign-in provider cannot be reached: {exc.message}") from None
    except (TimeoutError, ConnectionError) as exc:
        raise OidcFailed(f"The sign-in provider did not answer ({exc}).") from None
    if response.status != 200 or response.truncated:
        raise OidcFailed(f"The sign-in provider answered {response.status} to {param}.")
    try:
        document = json.loads(response.body)
    except ValueError:
        raise OidcFailed(f"The sign-in provider's {param} answer is not JSON.") from None
    if not isinstance(document, dict):
        raise OidcFailed(f"The sign-in provider's {param} answer is not a JSON object.")
    return document


async def _provider(request: Request, oidc: OidcSettings) -> Provider:
    """The discovery document, read once per process; its issuer must be the configured one."""
    cached: Provider | None = getattr(request.app.state, "oidc_provider", None)
    if cached is not None:
        return cached
    assert oidc.issuer is not None
    issuer = oidc.issuer.rstrip("/")
    found = await _fetch_json(
        request, oidc, f"{issuer}/.well-known/openid-configuration", "discovery"
    )
    if str(found.get("issuer", "")).rstrip("/") != issuer:
        raise OidcFailed("The sign-in provider's discovery document names another issuer.")
    try:
        provider = Provider(
            str(found["authorization_endpoint"]),
            str(found["token_endpoint"]),
            str(found["jwks_uri"]),
        )
    except KeyError as exc:
        raise OidcFailed(f"The provider's discovery document lacks {exc.args[0]}.") from None
    request.app.state.oidc_provider = provider
    return provider


def _failed(request: Request, message: str, status: int = 400) -> HTMLResponse:
    response = _render(request, "signin.html", status=status, error=message)
    response.delete_cookie(FLOW_COOKIE, path="/signin/oidc")
    return response


@router.get("/signin/oidc")
async def start(request: Request) -> Response:
    oidc = _settings(request)
    try:
        provider = await _provider(request, oidc)
    except OidcFailed as exc:
        return _failed(request, str(exc), status=502)
    from authlib.oauth2.rfc7636 import (  # type: ignore[import-untyped]  # the `oidc` extra
        create_s256_code_challenge,
    )

    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    query = urlencode(
        {
            "response_type": "code",
            "client_id": oidc.client_id,
            "redirect_uri": _redirect_url(request, oidc),
            "scope": " ".join(oidc.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    joiner = "&" if "?" in provider.authorization_endpoint else "?"
    response = RedirectResponse(f"{provider.authorization_endpoint}{joiner}{query}", 303)
    flow = {"state": state, "nonce": nonce, "verifier": verifier}
    response.set_cookie(
        FLOW_COOKIE,
        _flow_signer(request).dumps(flow),
        max_age=FLOW_SECONDS,
        path="/signin/oidc",
        httponly=True,
        samesite="lax",  # the provider's redirect back is a top-level GET from its site
        secure=request.url.scheme == "https",
    )
    return response


def _verified_claims(
    id_token: str, jwks: dict[str, Any], oidc: OidcSettings, nonce: str
) -> dict[str, Any]:
    from joserfc import jwt  # the `oidc` extra (authlib depends on joserfc)
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
    except (JoseError, ValueError, TypeError) as exc:
        raise OidcFailed(f"The ID token's signature does not check out ({exc}).") from None
    claims = dict(token.claims)
    assert oidc.issuer is not None
    if str(claims.get("iss", "")).rstrip("/") != oidc.issuer.rstrip("/"):
        raise OidcFailed("The ID token comes from another issuer.")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if oidc.client_id not in audiences or (
        len(audiences) > 1 and claims.get("azp") != oidc.client_id
    ):
        raise OidcFailed("The ID token was issued for another client.")
    now = time.time()
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp < now - CLOCK_SKEW_SECONDS:
        raise OidcFailed("The ID token has expired; sign in again.")
    iat = claims.get("iat")
    if isinstance(iat, int | float) and iat > now + CLOCK_SKEW_SECONDS:
        raise OidcFailed("The ID token was issued in the future; check the clocks.")
    if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
        raise OidcFailed("The ID token's nonce does not match this sign-in; sign in again.")
    return claims


async def _web_key(request: Request, email: str, create: bool) -> ApiKey:
    """The user's ``web-oidc`` key (made if missing) for the user named ``email``."""
    keys = _services(request).keys
    user = await keys.find_user(email)
    if user is None:
        if not create:
            raise OidcFailed(
                f"There is no imagegate account for {email}. Ask an admin to create one "
                f"(imagegate keys create --user {email})."
            )
        user = await keys.ensure_user(email)
    for key in await keys.list_keys(include_revoked=False):
        if key.user_id == user.id and key.name == OIDC_KEY_NAME:
            return key
    return (await keys.create(OIDC_KEY_NAME, user.role, user=user.name)).key


@router.get("/signin/oidc/callback")
async def callback(request: Request) -> Response:
    oidc = _settings(request)
    params = request.query_params
    try:
        flow = _flow_signer(request).loads(
            request.cookies.get(FLOW_COOKIE, ""), max_age=FLOW_SECONDS
        )
    except BadSignature:
        return _failed(request, "This sign-in was not started here or took too long; try again.")
    if not isinstance(flow, dict) or not hmac.compare_digest(
        str(flow.get("state", "")), params.get("state", "")
    ):
        return _failed(request, "The sign-in answer does not match this sign-in; try again.")
    if "error" in params:
        return _failed(request, f"The sign-in provider refused: {params['error']}.", 401)
    code = params.get("code")
    if not code:
        return _failed(request, "The sign-in provider sent no authorization code.")
    try:
        provider = await _provider(request, oidc)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": _redirect_url(request, oidc),
            "code_verifier": str(flow.get("verifier", "")),
        }
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        if oidc.client_secret is not None:
            pair = f"{oidc.client_id}:{oidc.client_secret.get_secret_value()}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form["client_id"] = oidc.client_id or ""
        tokens = await _fetch_json(
            request,
            oidc,
            provider.token_endpoint,
            "token",
            method="POST",
            headers=headers,
            body=urlencode(form).encode("ascii"),
        )
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise OidcFailed("The sign-in provider sent no ID token.")
        jwks = await _fetch_json(request, oidc, provider.jwks_uri, "jwks")
        claims = _verified_claims(id_token, jwks, oidc, str(flow.get("nonce", "")))
        email = claims.get("email")
        if not isinstance(email, str) or not email or claims.get("email_verified") is not True:
            raise OidcFailed("The sign-in provider did not vouch for an email address.")
        key = await _web_key(request, email.strip().lower(), oidc.create_users)
    except OidcFailed as exc:
        return _failed(request, str(exc), status=401)
    sessions = _sessions(request)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(FLOW_COOKIE, path="/signin/oidc")
    response.set_cookie(
        COOKIE,
        sessions.issue(key.id),
        max_age=sessions.max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response
