"""What the services need from the database, as protocols: services never import SQLAlchemy."""

from __future__ import annotations

from typing import Protocol

from imagegate.models import ApiKey, Generation, Role


class Database(Protocol):
    async def ping(self) -> None:
        """Raise ``Unavailable`` when the database cannot answer."""
        ...


class KeyRepository(Protocol):
    async def ensure_user(self, name: str, role: Role) -> tuple[str, Role]:
        """The id and role of the user called ``name``, created with ``role`` if new."""
        ...

    async def insert_key(self, key: ApiKey, key_hash: str) -> None: ...

    async def find_active_by_hash(self, key_hash: str) -> tuple[ApiKey, str] | None:
        """The unrevoked key with this hash, and the hash as stored."""
        ...

    async def list_keys(self, include_revoked: bool) -> list[ApiKey]: ...

    async def revoke(self, prefix: str) -> list[ApiKey]:
        """Revoke every active key whose prefix is ``prefix``; return what was revoked."""
        ...

    async def count_active_admin_keys(self) -> int: ...


class GenerationRepository(Protocol):
    async def record(self, generation: Generation) -> None:
        """Write the generation, its images and its events in one transaction."""
        ...

    async def get(self, generation_id: str) -> Generation | None: ...
