"""API keys: issue, list, revoke, and turn a bearer secret into a Principal.

Secrets are ``ig_`` + 43 URL-safe characters (32 random bytes). Only their SHA-256 is stored;
the first 11 characters are kept as a prefix so people can tell keys apart. Verified keys are
remembered for ``auth_cache_seconds`` so the hot path does not read the database per request;
a revoke in this process takes effect at once, one in another process within that time.

A key may carry an expiry: past it the key is refused with ``api_key_expired`` (a cached key is
never trusted past its expiry). ``last_used_at`` is recorded at most once a minute per key, by a
background task: the request that notices only sets a dict entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from imagegate.db.base import KeyRepository
from imagegate.errors import ApiKeyExpired, AuthenticationFailed, InvalidRequest, NotFound
from imagegate.models import (
    DEFAULT_RATE_LIMITS,
    NO_LIMITS,
    ApiKey,
    Limits,
    Principal,
    RateLimits,
    Role,
    UserRecord,
    new_id,
)

SECRET_PREFIX = "ig_"  # noqa: S105 - a public marker, not a secret
DISPLAY_PREFIX_LENGTH = 11
BOOTSTRAP_ADMIN = "admin"
LOCAL_CLI_USER = "local-cli"
LAST_USED_INTERVAL_SECONDS = 60.0
"""``last_used_at`` is written at most this often per key (per process)."""

log = logging.getLogger(__name__)
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: ``secret`` is shown once and never stored."""

    key: ApiKey
    secret: str
    webhook_secret: str
    """Signs this key's job webhooks (Standard Webhooks ``whsec_...``); also shown once."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


class KeyService:
    def __init__(
        self,
        keys: KeyRepository,
        cache_seconds: float,
        new_webhook_secret: Callable[[], str],
    ) -> None:
        self._new_webhook_secret = new_webhook_secret
        self._keys = keys
        self._cache_seconds = cache_seconds
        self._verified: dict[str, tuple[float, Principal]] = {}
        self._by_id: dict[str, tuple[float, Principal]] = {}
        self._next_use_note: dict[str, float] = {}
        self._used: dict[str, datetime] = {}
        self._recording: asyncio.Task[None] | None = None

    async def create(
        self,
        name: str,
        role: Role = Role.USER,
        user: str | None = None,
        limits: Limits = NO_LIMITS,
        rate_limits: RateLimits = DEFAULT_RATE_LIMITS,
        expires_at: datetime | None = None,
    ) -> IssuedKey:
        """Issue a key for ``user`` (default: a user named like the key, created if new),
        working until ``expires_at`` (None: until revoked)."""
        user_id, user_role = await self._keys.ensure_user(user or name, role)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=new_id(),
            user_id=user_id,
            user_name=user or name,
            role=user_role,
            name=name,
            prefix=secret[:DISPLAY_PREFIX_LENGTH],
            created_at=datetime.now(UTC),
            limits=limits,
            rate_limits=rate_limits,
            expires_at=_aware(expires_at),
        )
        webhook_secret = self._new_webhook_secret()
        await self._keys.insert_key(key, hash_secret(secret), webhook_secret)
        return IssuedKey(key=key, secret=secret, webhook_secret=webhook_secret)

    async def list_keys(self, include_revoked: bool = False) -> list[ApiKey]:
        return await self._keys.list_keys(include_revoked)

    async def revoke(self, prefix: str) -> list[ApiKey]:
        revoked = await self._keys.revoke(prefix)
        if not revoked:
            raise NotFound(f"No active API key has the prefix {prefix!r}.", param="prefix")
        revoked_ids = {key.id for key in revoked}
        for key_id in revoked_ids:
            self._by_id.pop(key_id, None)
        self._verified = {
            h: entry for h, entry in self._verified.items() if entry[1].key_id not in revoked_ids
        }
        return revoked

    async def set_limits(
        self, prefix: str, limits: Limits, rate_limits: RateLimits = DEFAULT_RATE_LIMITS
    ) -> list[ApiKey]:
        """Replace the limits of the key with ``prefix``: budgets and quotas (unlimited where
        None) and traffic limits (the configured default where None, unlimited where 0)."""
        updated = await self._keys.set_key_limits(prefix, limits, rate_limits)
        if not updated:
            raise NotFound(f"No active API key has the prefix {prefix!r}.", param="prefix")
        self._verified.clear()  # limits travel with the cached principal
        self._by_id.clear()
        return updated

    async def set_expiry(self, prefix: str, expires_at: datetime | None) -> list[ApiKey]:
        """Make the key with ``prefix`` stop working at ``expires_at`` (None: never)."""
        updated = await self._keys.set_key_expiry(prefix, _aware(expires_at))
        if not updated:
            raise NotFound(f"No active API key has the prefix {prefix!r}.", param="prefix")
        self._verified.clear()
        self._by_id.clear()
        return updated

    async def set_user_limits(self, user_name: str, limits: Limits) -> None:
        if not await self._keys.set_user_limits(user_name, limits):
            raise NotFound(f"No user {user_name!r}.", param="user")
        self._verified.clear()
        self._by_id.clear()

    async def set_enhance_prompt(self, user_name: str, enhance: bool | None) -> None:
        """A user's own prompt-enhancement choice, kept for their next requests (None: each
        model's default)."""
        if not await self._keys.set_user_enhance_prompt(user_name, enhance):
            raise NotFound(f"No user {user_name!r}.", param="user")

    async def list_users(self, limit: int = 500) -> list[UserRecord]:
        """Users by name with their count of active keys (the admin pages)."""
        return await self._keys.list_users(limit)

    async def find_user(self, name: str) -> UserRecord | None:
        return await self._keys.find_user(name=name)

    async def ensure_user(self, name: str) -> UserRecord:
        """The user called ``name``, created with the role ``user`` if new."""
        await self._keys.ensure_user(name, Role.USER)
        found = await self._keys.find_user(name=name)
        assert found is not None
        return found

    async def principal_for_user(self, user_id: str) -> Principal:
        """A keyless Principal for a user (a Web UI session signed in with OIDC): the user's
        own limits apply, no key's; 401 if the user is gone."""
        user = await self._keys.find_user(user_id=user_id)
        if user is None:
            raise AuthenticationFailed("This account no longer exists.")
        return Principal(
            user_id=user.id, user_name=user.name, role=user.role, user_limits=user.limits
        )

    async def ensure_bootstrap_admin(self) -> IssuedKey | None:
        """On first start, issue the one admin key (returned once for printing); else None."""
        if await self._keys.count_active_admin_keys():
            return None
        return await self.create(BOOTSTRAP_ADMIN, Role.ADMIN)

    async def bot_principal(
        self,
        user_name: str,
        key_name: str,
        limits: Limits = NO_LIMITS,
        rate_limits: RateLimits = DEFAULT_RATE_LIMITS,
    ) -> Principal:
        """The principal a bot acts as for one of its users: that user's key ``key_name``,
        issued on first use (the user created with ``limits`` if new). Its secret is never
        shown: the bot submits in-process, so it needs only the key's identity and limits.
        Read each time, so limits an admin raises apply to the next request, and a revoked
        key stays revoked (no new one is issued)."""
        key = await self._keys.find_by_name(user_name, key_name)
        if key is not None and key.revoked_at is not None:
            raise AuthenticationFailed(
                f"Access of {user_name} was revoked by an admin (key {key.prefix}...)."
            )
        if key is None:
            await self._keys.ensure_user(user_name, Role.USER, limits)
            issued = await self.create(key_name, Role.USER, user_name, rate_limits=rate_limits)
            key = await self._keys.find_active_by_id(issued.key.id)
            assert key is not None  # just written
        _refuse_expired(key)
        return _principal(key)

    async def local_cli_principal(self) -> Principal:
        """The owner of what the CLI generates in-process, without a key."""
        user_id, role = await self._keys.ensure_user(LOCAL_CLI_USER, Role.ADMIN)
        return Principal(user_id=user_id, user_name=LOCAL_CLI_USER, role=role)

    async def authenticate(self, authorization: str | None) -> Principal:
        """The Principal behind an ``Authorization: Bearer ig_...`` header value."""
        secret = _bearer_secret(authorization)
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._verified.get(digest)
        if cached is not None and cached[0] > now:
            self._note_use(cached[1], now)
            return cached[1]
        found = await self._keys.find_active_by_hash(digest)
        # The index lookup is by hash, so its timing says nothing about the secret; the final
        # comparison of what the database holds is constant-time all the same.
        if found is None or not hmac.compare_digest(found[1], digest):
            self._verified.pop(digest, None)
            raise AuthenticationFailed(
                f"Incorrect API key provided: {_redact(secret)}. Create one with "
                "`imagegate keys create`."
            )
        key = found[0]
        _refuse_expired(key)
        principal = _principal(key)
        if self._cache_seconds > 0:
            self._verified[digest] = (now + self._trust_seconds(key), principal)
        self._note_use(principal, now)
        return principal

    async def principal_for_key(self, key_id: str) -> Principal:
        """The Principal of an active key by id (a job runs as the key that submitted it)."""
        now = time.monotonic()
        cached = self._by_id.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        key = await self._keys.find_active_by_id(key_id)
        if key is None:
            self._by_id.pop(key_id, None)
            raise AuthenticationFailed("The API key that submitted this job was revoked.")
        _refuse_expired(key)
        principal = _principal(key)
        if self._cache_seconds > 0:
            self._by_id[key_id] = (now + self._trust_seconds(key), principal)
        return principal

    def _trust_seconds(self, key: ApiKey) -> float:
        """How long a verified key may be served from the cache: never past its expiry."""
        if key.expires_at is None:
            return self._cache_seconds
        left = (key.expires_at - datetime.now(UTC)).total_seconds()
        return max(0.0, min(self._cache_seconds, left))

    def _note_use(self, principal: Principal, now: float) -> None:
        """Queue a ``last_used_at`` write, at most once a minute per key; never awaits."""
        key_id = principal.key_id
        if key_id is None or self._next_use_note.get(key_id, 0.0) > now:
            return
        self._next_use_note[key_id] = now + LAST_USED_INTERVAL_SECONDS
        self._used[key_id] = datetime.now(UTC)
        if self._recording is None:
            self._recording = asyncio.get_running_loop().create_task(self._record_uses())

    async def _record_uses(self) -> None:
        try:
            while self._used:
                used, self._used = self._used, {}
                try:
                    await self._keys.record_last_used(used)
                except Exception:  # bookkeeping must never fail a request
                    log.warning("could not record last use of %d API key(s)", len(used))
        finally:
            self._recording = None

    async def aclose(self) -> None:
        """Write the last uses still queued (the container calls this before closing)."""
        if self._recording is not None:
            await self._recording
        if self._used:
            await self._record_uses()


def _principal(key: ApiKey) -> Principal:
    return Principal(
        user_id=key.user_id,
        user_name=key.user_name,
        role=key.role,
        key_id=key.id,
        key_limits=key.limits,
        user_limits=key.user_limits,
        rate_limits=key.rate_limits,
    )


def expiry_from(
    expires_in: str | None, expires_at: datetime | None, now: datetime
) -> datetime | None:
    """The expiry asked for as a duration from ``now`` (``90m``, ``12h``, ``30d``, ``2w``) or
    as a moment (without an offset: UTC); None if neither was given."""
    if expires_in is not None and expires_at is not None:
        raise InvalidRequest("Give an expiry as a duration or as a moment, not both.")
    if expires_at is not None:
        return _aware(expires_at)
    if expires_in is None:
        return None
    match = _DURATION.match(expires_in)
    if match is None or int(match.group(1)) == 0:
        raise InvalidRequest(
            f"{expires_in!r} is not a duration: write a number and a unit, e.g. 30d, 12h, 90m, 2w.",
            param="expires_in",
        )
    return now + timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _aware(moment: datetime | None) -> datetime | None:
    """A naive moment is taken as UTC."""
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _refuse_expired(key: ApiKey) -> None:
    if key.expired(datetime.now(UTC)):
        assert key.expires_at is not None
        raise ApiKeyExpired(
            f"This API key ({key.prefix}...) expired at {key.expires_at:%Y-%m-%d %H:%M} UTC. "
            "Ask an admin for a new key, or to extend this one with `imagegate keys update "
            f"{key.prefix} --expires-at ...`."
        )


def _bearer_secret(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it as 'Authorization: Bearer ig_...'."
        )
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationFailed("The Authorization header must be 'Bearer <API key>'.")
    return secret.strip()


def _redact(secret: str) -> str:
    return secret[:6] + "***" if len(secret) > 10 else "***"
