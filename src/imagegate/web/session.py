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
    """``configured`` (``IMAGEGATE_WEB__SESSION_SECRET``, shared by every gateway), else the
    secret in ``<data_dir>/web-session-secret``, made on first use and kept."""
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
    """A session is ``{"key_id": <id>}`` with its CSRF token; it lasts ``max_age`` seconds.

    The id is that of the API key signed in with (or, after OIDC, of the user's ``web-oidc``
    key): the cookie is signed, not encrypted, so it never holds the key itself, and revoking
    the key signs its sessions out."""

    def __init__(self, secret: str, max_age: int = MAX_AGE) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt="imagegate-web-session")
        self.max_age = max_age

    def issue(self, key_id: str) -> str:
        return self._signer.dumps({"key_id": key_id, "csrf": secrets.token_urlsafe(16)})

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
