"""A small OpenID Connect provider on loopback for the Web UI's OIDC tests (real HTTP).

It serves a discovery document, a JWKS, an authorize endpoint that signs in whoever the test
names (``login_hint``) and redirects back with a code, and a token endpoint that checks the
client's secret and the PKCE verifier and issues an RS256-signed ID token with the nonce.
``tamper`` changes one claim of the next tokens (to test that imagegate refuses them).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "imagegate-test"
CLIENT_SECRET = "s3cret-for-tests"  # a test fixture's secret


@dataclass
class OidcProvider:
    url: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048))
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tamper: dict[str, Any] = field(default_factory=dict)
    token_requests: int = 0
    sign_with: RSAKey | None = None
    """Sign the next tokens with this key instead of the published one (a forgery)."""
    _runner: web.AppRunner | None = None

    async def start(self) -> OidcProvider:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _discovery(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def _jwks(self, _: web.Request) -> web.Response:
        return web.json_response({"keys": [self.key.as_dict(private=False, kid="k1")]})

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID or q.get("code_challenge_method") != "S256":
            return web.Response(status=400, text="bad client or no PKCE")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "email": q.get("login_hint", "alice@example.com"),
            "nonce": q["nonce"],
            "challenge": q["code_challenge"],
            "redirect_uri": q["redirect_uri"],
        }
        back = f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}"
        raise web.HTTPFound(back)

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        grant = self.codes.pop(str(form.get("code", "")), None)
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        digest = hashlib.sha256(str(form.get("code_verifier", "")).encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
            return web.json_response({"error": "invalid_grant", "pkce": "mismatch"}, status=400)
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": "sub-" + grant["email"],
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            "email": grant["email"],
            "email_verified": True,
            **self.tamper,
        }
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.sign_with or self.key)
        return web.json_response(
            {"access_token": "at", "token_type": "Bearer", "id_token": id_token}
        )
