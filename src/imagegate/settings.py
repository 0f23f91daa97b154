"""Typed settings, read from ``IMAGEGATE_*`` environment variables.

Nested slices use ``__``: ``IMAGEGATE_DATABASE__URL``, ``IMAGEGATE_STORAGE__ROOT``. Each backend
receives only its own slice. Nothing here runs at import time: call ``Settings()`` (or
``load_settings()``) where the process starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from imagegate.errors import ConfigurationError


class DatabaseSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default: SQLite file `imagegate.db` in the data dir. "
        "PostgreSQL: postgresql+asyncpg://user@host/db",
    )
    auto_migrate: bool = Field(
        default=True, description="Apply pending migrations when the service starts."
    )
    pool_size: int = Field(default=10, ge=1, description="Connections kept open (PostgreSQL).")
    echo: bool = Field(default=False, description="Log every SQL statement (debugging only).")


class StorageSettings(BaseModel):
    backend: str = Field(default="local", description="Where image bytes live: `local`.")
    root: Path | None = Field(
        default=None, description="Local storage folder; default: `files/` in the data dir."
    )


ProviderKind = Literal[
    "builtin",
    "openai",
    "openai_compatible",
    "google",
    "vertex",
    "stability",
    "cloudflare",
    "cloudflare_worker",
]


class ProviderSettings(BaseModel):
    """One configured provider instance; each adapter reads only the fields of its kind."""

    kind: ProviderKind
    api_key: SecretStr | None = Field(default=None, description="API key or token.")
    base_url: str | None = Field(
        default=None, description="Override the provider's API base (fakes, proxies, compatibles)."
    )
    project: str | None = Field(default=None, description="Vertex AI: Google Cloud project.")
    location: str = Field(default="us-central1", description="Vertex AI: region, or 'global'.")
    account_id: str | None = Field(default=None, description="Cloudflare account id.")
    method: Literal["GET", "POST"] = Field(
        default="POST", description="cloudflare_worker: GET with ?prompt= or POST with a key."
    )
    timeout_seconds: float = Field(default=60.0, gt=0, description="Per-attempt timeout.")
    max_concurrency: int = Field(default=10, ge=1, description="Concurrent upstream calls.")


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    access_log: bool = Field(default=True, description="One log line per HTTP request.")


class Settings(BaseSettings):
    """All of imagegate's settings; see the configuration table in README.md."""

    model_config = SettingsConfigDict(
        env_prefix="IMAGEGATE_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(
        default=Path("./data"), description="Default home of the SQLite file and local storage."
    )
    public_url: str | None = Field(
        default=None,
        description="Base of the permanent image URLs, e.g. https://img.example.com; "
        "default: http://HOST:PORT of the server.",
    )
    default_model: str = Field(
        default="builtin", description="Model used when a request names none."
    )
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a verified API key is trusted without a database read; a key revoked "
        "in another process is refused within this time.",
    )
    max_image_pixels: int = Field(
        default=40_000_000, ge=1, description="Largest image (width x height) imagegate decodes."
    )
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    server: ServerSettings = ServerSettings()

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.data_dir / 'imagegate.db'}"

    @property
    def storage_root(self) -> Path:
        return self.storage.root or self.data_dir / "files"

    @property
    def base_url(self) -> str:
        """Where clients reach this gateway: the configured public URL or the bind address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.server.host}:{self.server.port}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, turning pydantic's report into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "IMAGEGATE_" + "__".join(str(part) for part in first["loc"]).upper()
        raise ConfigurationError(f"invalid setting {name}: {first['msg']}", param=name) from exc
