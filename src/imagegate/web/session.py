"""Signed session cookies and CSRF tokens; the API key never reaches JavaScript."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import SecretStr

COOKIE = "imagegate_session"
MAX_AGE = 7 * 24 * 3600


def session_secret(data_dir: Path, configured: SecretStr | None = None) -> str:
    """``IMAGEGATE_WEB__SESSION_SECRET`` if set (what several gateways behind one load
    balancer share), else the secret in ``<data_dir>/web-session-secret``, made on first use and
    kept."""
    if configured is not None:
        return configured.get_secret_value()
    path = data_dir / "web-session-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


class Sessions:
    """A session is ``{"key": <API key>}`` (signed in with a key) or ``{"key_id": <id>}``
    (signed in with OIDC: the id of the user's ``web-oidc`` key, whose revocation signs the
    session out), with its CSRF token; it lasts ``max_age`` seconds."""

    def __init__(self, secret: str, max_age: int = MAX_AGE) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt="imagegate-web-session")
        self.max_age = max_age

    def issue(self, api_key: str | None = None, *, key_id: str | None = None) -> str:
        who = {"key": api_key} if api_key is not None else {"key_id": key_id or ""}
        return self._signer.dumps({**who, "csrf": secrets.token_urlsafe(16)})

    def read(self, cookie: str | None) -> dict[str, str] | None:
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        return data if isinstance(data, dict) else None


def csrf_ok(session: dict[str, str], token: str | None) -> bool:
    return token is not None and hmac.compare_digest(session.get("csrf", ""), token)
