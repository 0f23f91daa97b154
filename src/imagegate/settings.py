"""Typed settings, read from ``IMAGEGATE_*`` environment variables.

Nested slices use ``__``: ``IMAGEGATE_DATABASE__URL``, ``IMAGEGATE_STORAGE__ROOT``. Providers,
catalogue additions and routes usually live in ``imagegate.yaml`` (see ``YamlFileSource``); the
environment wins over the file. Each backend receives only its own slice. Nothing here runs at
import time: call ``Settings()`` (or ``load_settings()``) where the process starts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from imagegate import __version__
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
    connect_timeout_seconds: float = Field(
        default=3.0,
        gt=0,
        description="Longest wait for a new PostgreSQL connection: past it (or when it is "
        "refused) the request fails with 503 `database_unavailable` instead of hanging.",
    )
    command_timeout_seconds: float | None = Field(
        default=60.0,
        gt=0,
        description="Longest wait for one PostgreSQL statement's answer (a database that "
        "stopped answering mid-request); none: no limit. Migrations are not limited.",
    )
    echo: bool = Field(default=False, description="Log every SQL statement (debugging only).")


class S3Settings(BaseModel):
    """An S3-compatible bucket (AWS, MinIO, Cloudflare R2, Ceph, ...); needs the `s3` extra."""

    bucket: str | None = Field(default=None, description="Bucket name (required for `s3`).")
    prefix: str = Field(
        default="", description="Key prefix inside the bucket, e.g. `imagegate/`; default: none."
    )
    endpoint_url: str | None = Field(
        default=None,
        description="The store's endpoint, e.g. http://minio:9000; default: AWS for the region.",
    )
    region: str = Field(default="us-east-1", description="Region the requests are signed for.")
    access_key_id: SecretStr | None = Field(
        default=None,
        description="Default: the AWS credential chain (AWS_* variables, profile, instance role).",
    )
    secret_access_key: SecretStr | None = Field(default=None)
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto",
        description="path: ENDPOINT/BUCKET/KEY (MinIO and most self-hosted stores); virtual: "
        "BUCKET.ENDPOINT/KEY; auto: botocore decides.",
    )
    delivery: Literal["stream", "redirect"] = Field(
        default="stream",
        description="How /files/{key} serves an image: stream it through the gateway (the "
        "bucket stays private), or redirect (307) to a short-lived presigned URL.",
    )
    presign_seconds: int = Field(
        default=300, ge=1, le=604800, description="Lifetime of a presigned URL (redirect)."
    )
    public_base_url: str | None = Field(
        default=None,
        description="Public or CDN base URL of the bucket: image URLs become BASE/PREFIX+KEY "
        "instead of the gateway's /files/KEY.",
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="Connect and read timeout of one S3 call."
    )
    max_connections: int = Field(default=64, ge=1, description="Connections kept to the store.")


class StorageSettings(BaseModel):
    backend: Literal["local", "s3"] = Field(
        default="local", description="Where image bytes live: `local` disk or `s3`."
    )
    root: Path | None = Field(
        default=None, description="Local storage folder; default: `files/` in the data dir."
    )
    s3: S3Settings = S3Settings()


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


class RouteTarget(BaseModel):
    """One step of a route: a catalogue model at a provider, with parameter overrides."""

    model: str = Field(description="A model name from the catalogue.")
    provider: str | None = Field(
        default=None, description="A configured provider; default: the catalogue entry's."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Merged into the upstream request last."
    )
    weight: int = Field(default=1, ge=1, description="Share of first attempts (weighted).")


class RouteSettings(BaseModel):
    """A public model name served by an ordered list of targets."""

    targets: list[RouteTarget] = Field(min_length=1)
    strategy: Literal["fallback", "weighted"] = Field(
        default="fallback",
        description="fallback: first target first; weighted: spread first attempts by weight.",
    )
    concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Requests of this model running at once per process; more wait in its "
        "queue. Default: the first target's provider max_concurrency.",
    )


class ResilienceSettings(BaseModel):
    """Retries, deadlines and circuit breakers around provider calls."""

    max_attempts: int = Field(default=4, ge=1, description="Upstream calls per request, at most.")
    max_attempts_per_target: int = Field(default=2, ge=1)
    backoff_base_seconds: float = Field(default=0.25, gt=0)
    backoff_max_seconds: float = Field(default=8.0, gt=0)
    deadline_seconds: float = Field(default=120.0, gt=0, description="Whole request, all tries.")
    breaker_consecutive_failures: int = Field(default=5, ge=1)
    breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_window: int = Field(default=20, ge=2, description="Recent calls the rate is over.")
    breaker_open_seconds: float = Field(default=30.0, gt=0)


class CacheSettings(BaseModel):
    """The exact cache and in-flight de-duplication."""

    enabled: bool = Field(default=True, description="Reuse images of identical requests.")
    ttl_seconds: float | None = Field(
        default=30 * 86400,
        gt=0,
        description="How long an entry is reused; none = forever. Images stay in the library.",
    )
    scope: Literal["global", "user"] = Field(
        default="global",
        description="global: identical requests of any user share images; user: per user only.",
    )
    memory_entries: int = Field(default=10_000, ge=0, description="In-process LRU in front of SQL.")
    memory_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How long an entry is trusted from memory before SQL is asked again (a "
        "refresh in another process shows here within this time).",
    )
    redis_seconds: float = Field(
        default=86400.0,
        gt=0,
        description="With IMAGEGATE_REDIS_URL: how long an entry stays in Redis at most (its own "
        "TTL if shorter), so Redis memory stays bounded; older ones are read from SQL again.",
    )
    cross_process: bool = Field(
        default=True,
        description="De-duplicate identical in-flight requests across processes through the "
        "database (needed when several processes share one database).",
    )
    flight_lease_seconds: float = Field(
        default=30.0, gt=0, description="A claim whose owner stops renewing it is taken over."
    )
    semantic: bool = Field(
        default=False,
        description="Reuse images of near-duplicate prompts (needs the `semantic` extra).",
    )
    semantic_threshold: float = Field(
        default=0.93,
        gt=0,
        le=1,
        description="Cosine similarity at or above which prompts match (0.93: see the tests).",
    )
    semantic_models: list[str] = Field(
        default_factory=list, description="Public models it applies to; empty means all."
    )


class TrafficSettings(BaseModel):
    """Per-key traffic limits (moving one-minute windows); 0 or null = unlimited. A key's own
    ``requests_per_minute`` / ``concurrent_generations`` columns override these."""

    requests_per_minute: int | None = Field(
        default=600, ge=0, description="Requests per key per minute on the image routes."
    )
    images_per_minute: int | None = Field(
        default=120, ge=0, description="Images asked for (n) per key per minute, moving window."
    )
    concurrent_generations: int | None = Field(
        default=2,
        ge=0,
        description="Generations per key calling a provider at once; more wait their turn in "
        "the model's queue.",
    )
    queue_size: int = Field(
        default=200, ge=0, description="Requests waiting per model and process; more get 429."
    )
    on_redis_error: Literal["open", "closed"] = Field(
        default="closed",
        description="With IMAGEGATE_REDIS_URL, when Redis does not answer: closed refuses image "
        "requests with 503; open serves them without limits (logged once per outage, shown as "
        "degraded in /readyz).",
    )
    queue_size_per_key: int = Field(
        default=100,
        ge=0,
        description="Requests of one key waiting per model and process; more get 429.",
    )


class JobSettings(BaseModel):
    """The jobs API, its durable queue and its workers."""

    embedded_workers: bool = Field(
        default=True,
        description="Run workers inside `imagegate serve` (the embedded default); turn off "
        "when `imagegate worker` processes do the work.",
    )
    concurrency: int = Field(default=8, ge=1, description="Jobs one worker process runs at once.")
    lease_seconds: float = Field(
        default=30.0,
        ge=2,
        description="A running job whose worker stops renewing its lease this long is run again.",
    )
    poll_seconds: float = Field(
        default=0.5, gt=0, description="How often an idle worker looks for new jobs."
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Runs of a job (crashes and retryable failures) at most."
    )
    retry_base_seconds: float = Field(
        default=15.0, gt=0, description="A failed job waits this long times 4^(attempt-1)."
    )
    max_rate_limit_wait_seconds: float = Field(
        default=300.0,
        ge=0,
        description="A job refused by a rate limit waits and runs again if the wait is at most "
        "this long; longer (e.g. a daily budget) fails it.",
    )
    batch_concurrency: int = Field(
        default=3, ge=1, description="Jobs of one batch running at once, unless it says."
    )
    shutdown_seconds: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM a worker finishes running jobs for this long, then puts the rest "
        "back in the queue.",
    )


class OutboundSettings(BaseModel):
    """Requests to URLs that users give imagegate (webhooks): the SSRF guard's exceptions."""

    allowlist: list[str] = Field(
        default_factory=list,
        description="Hosts (exact names, e.g. `hooks.internal`) and networks (CIDRs or single "
        "addresses, e.g. `10.1.0.0/16`, `127.0.0.1`) that outbound requests may reach although "
        "they are loopback, private, link-local or reserved. Cloud-metadata addresses are "
        "exempted only when listed exactly. JSON list in the environment.",
    )
    user_agent: str = Field(
        default=f"imagegate/{__version__}", description="User-Agent of outbound requests."
    )


class WebhookSettings(BaseModel):
    """Signed job notifications (Standard Webhooks)."""

    timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="One delivery attempt, connect to last byte read; slower is a failed attempt.",
    )
    max_response_bytes: int = Field(
        default=4096,
        ge=0,
        description="Bytes of the receiver's answer read (and kept as the delivery's excerpt); "
        "the rest is not read.",
    )


DEFAULT_ENHANCER_SYSTEM_PROMPT = (
    "You rewrite prompts for an image-generation model. Given the user's prompt, answer with "
    "one improved prompt: keep the user's subject, intent and any text to be drawn exactly; "
    "add concrete visual detail (composition, lighting, style, colour, medium). Answer with "
    "the prompt alone, in the user's language, as plain text on one paragraph: no preamble, "
    "no quotes, no markdown, no explanation."
)


class EnhancerSettings(BaseModel):
    """Prompt enhancement: an OpenAI-compatible chat-completions endpoint rewrites prompts
    before they reach the image provider. Off unless ``base_url`` is set."""

    base_url: str | None = Field(
        default=None,
        description="Base of the chat-completions API, e.g. https://api.openai.com/v1 (POST "
        "BASE/chat/completions); unset = enhancement off.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="Bearer token for the endpoint (never logged); none = no auth."
    )
    model: str = Field(default="gpt-4o-mini", description="Chat model that rewrites prompts.")
    system_prompt: str = Field(
        default=DEFAULT_ENHANCER_SYSTEM_PROMPT,
        min_length=1,
        description="Instructions sent as the system message.",
    )
    timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait for the rewrite, connect to last byte; past it the original "
        "prompt is used.",
    )
    max_output_chars: int = Field(
        default=2000,
        ge=1,
        description="A cleaned rewrite longer than this (or than the model's prompt limit) is "
        "not used: the original prompt is.",
    )
    temperature: float = Field(default=0.7, ge=0, le=2, description="Sampling temperature.")
    models: list[str] = Field(
        default_factory=list,
        description="Public models whose requests are enhanced unless they say "
        "enhance_prompt: false (besides catalogue entries with enhance_prompt: true). JSON "
        "list in the environment.",
    )


class TelegramSettings(BaseModel):
    """The Telegram bot (`imagegate bot telegram`): who may use it and what new users get."""

    token: SecretStr | None = Field(
        default=None, description="The bot's token from @BotFather; never logged."
    )
    base_url: str = Field(
        default="https://api.telegram.org",
        description="Root of the Bot API (a local Bot API server, or a fake in tests).",
    )
    allowlist: list[int] = Field(
        default_factory=list,
        description="Telegram user ids that may use the bot; empty = everyone. JSON list in the "
        "environment, e.g. [123456789].",
    )
    default_model: str | None = Field(
        default=None, description="Model of `/image <prompt>`; default: IMAGEGATE_DEFAULT_MODEL."
    )
    mode: Literal["polling", "webhook"] = Field(
        default="polling", description="How updates arrive: long polling, or a webhook."
    )
    poll_timeout_seconds: int = Field(
        default=30, ge=0, le=50, description="Long-polling timeout of one getUpdates call."
    )
    webhook_url: str | None = Field(
        default=None,
        description="Webhook mode: the public HTTPS URL Telegram posts updates to; the bot "
        "listens on the same path (e.g. https://bot.example.com/telegram -> /telegram).",
    )
    webhook_listen: str = Field(default="127.0.0.1", description="Webhook mode: bind address.")
    webhook_port: int = Field(default=8443, ge=1, le=65535, description="Webhook mode: port.")
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Webhook mode: the secret Telegram sends in X-Telegram-Bot-Api-Secret-Token "
        "(1-256 of A-Z a-z 0-9 _ -); updates without it are refused. Unset: a random one is "
        "made at each start and handed to Telegram.",
    )
    requests_per_minute: int | None = Field(
        default=None,
        ge=0,
        description="Image requests one Telegram user may send per minute; default: "
        "IMAGEGATE_LIMITS__REQUESTS_PER_MINUTE, 0 = unlimited.",
    )
    budget_usd_day: float | None = Field(
        default=None, ge=0, description="A new bot user's USD per UTC day; default: unlimited."
    )
    budget_usd_month: float | None = Field(
        default=None, ge=0, description="A new bot user's USD per UTC month; default: unlimited."
    )
    images_per_day: int | None = Field(
        default=None, ge=0, description="A new bot user's images per UTC day; default: unlimited."
    )


class CorsSettings(BaseModel):
    """Cross-origin browser access to the API: closed unless origins are listed."""

    allow_origins: list[str] = Field(
        default_factory=list,
        description="Origins (e.g. `https://app.example.com`) whose pages may call the API from "
        "a browser; empty = none (CORS closed). JSON list in the environment.",
    )
    allow_methods: list[str] = Field(
        default_factory=lambda: ["GET", "POST", "PATCH", "PUT", "DELETE"],
        description="Methods allowed cross-origin.",
    )
    allow_headers: list[str] = Field(
        default_factory=lambda: ["Authorization", "Content-Type", "Idempotency-Key", "Prefer"],
        description="Request headers allowed cross-origin.",
    )
    allow_credentials: bool = Field(
        default=False, description="Let cross-origin pages send cookies (never with `*`)."
    )
    max_age_seconds: int = Field(default=600, ge=0, description="How long preflights are cached.")


class OidcSettings(BaseModel):
    """Optional sign-in to the Web UI with an OpenID Connect provider (needs the `oidc` extra).

    On when ``issuer`` and ``client_id`` are set. The provider's verified ``email`` claim names
    the imagegate user (``imagegate keys create --user alice@example.com`` pre-maps one); with
    ``create_users`` a new user with the role ``user`` is made on first sign-in instead of the
    sign-in being refused."""

    issuer: str | None = Field(
        default=None,
        description="The provider's issuer URL, e.g. `https://accounts.google.com`; its "
        "`/.well-known/openid-configuration` is read through the SSRF guard.",
    )
    client_id: str | None = Field(default=None, description="The OAuth client id.")
    client_secret: SecretStr | None = Field(
        default=None, description="The OAuth client secret (sent with HTTP Basic); never logged."
    )
    redirect_url: str | None = Field(
        default=None,
        description="The callback URL registered at the provider; default: "
        "`<public url>/signin/oidc/callback`.",
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "email", "profile"],
        description="Scopes asked for (JSON list in the environment); must include `openid`.",
    )
    create_users: bool = Field(
        default=False,
        description="Create a user (role `user`) on the first sign-in of an unknown verified "
        "email; default: only emails that already name an imagegate user may sign in.",
    )
    label: str = Field(
        default="Sign in with single sign-on", description="Text of the sign-in button."
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="Each call to the provider (discovery, keys, token)."
    )

    @property
    def enabled(self) -> bool:
        return bool(self.issuer and self.client_id)


class WebSettings(BaseModel):
    """The Web UI served at `/`."""

    enabled: bool = Field(
        default=True, description="Serve the Web UI (off: `/` and its pages are 404)."
    )
    session_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="How long a Web UI sign-in lasts (the signed session cookie's lifetime).",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="The key that signs Web UI session cookies; the same on every gateway "
        "behind one load balancer. Unset: a random one kept in `<data_dir>/web-session-secret` "
        "(enough for one gateway). Never logged.",
    )
    oidc: OidcSettings = OidcSettings()


class RequestSettings(BaseModel):
    """Limits on what a client may send, checked before the body is parsed."""

    max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest request body (JSON or multipart, all files together); larger -> 413.",
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        description="Largest request head (request line and all headers); larger -> 431 "
        "(`imagegate serve`).",
    )
    max_json_depth: int = Field(
        default=32,
        ge=2,
        le=512,
        description="Deepest nesting of arrays and objects in a JSON body; deeper -> 400.",
    )
    max_upload_bytes: int = Field(
        default=20 * 1024 * 1024,
        ge=1024,
        description="Largest uploaded image or mask (each file of an edit); larger -> 413.",
    )


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    access_log: bool = Field(default=True, description="One log line per HTTP request.")


class LogSettings(BaseModel):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level written to stderr."
    )
    format: Literal["json", "console"] = Field(
        default="json", description="json: one JSON object per line; console: readable lines."
    )
    prompts: bool = Field(
        default=False, description="Allow prompts in log lines (off: they are redacted)."
    )


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
    budget_hold_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How long a request's budget reservation is kept if it never settles (its "
        "process died); workers give such holds back after this.",
    )
    idempotency_ttl_seconds: int = Field(
        default=86400, ge=60, description="How long a response is kept for Idempotency-Key replays."
    )
    config_file: Path | None = Field(
        default=None,
        description="YAML file with providers, models and routes; default ./imagegate.yaml "
        "if it exists. Values may use ${ENV_VAR}.",
    )
    redis_url: str | None = Field(
        default=None,
        description="redis://host:6379/0: share rate limits, concurrency slots and a cache "
        "tier between replicas (needs the `redis` extra); default: this process's memory.",
    )
    redis_prefix: str = Field(
        default="imagegate",
        min_length=1,
        description="Start of every Redis key: deployments (each with its own database) that "
        "share one Redis need different prefixes.",
    )
    redis_timeout_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Longest wait to connect to Redis or for one reply; past it the cache "
        "falls through to SQL.",
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        description="`imagegate cleanup` deletes unpinned images older than this many days "
        "(their blobs too, unless another record uses them); default: keep every image.",
    )
    cleanup_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="`imagegate cleanup` never deletes a blob younger than this, so a write "
        "in flight (blob stored, record not yet committed) is safe.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token that may scrape GET /metrics besides admin keys; default: "
        "admin keys only.",
    )
    metrics_bind: str | None = Field(
        default=None,
        description="HOST:PORT (e.g. `127.0.0.1:9100`, `[::]:9100`) where `imagegate serve` "
        "and `imagegate worker` also serve GET /metrics without authentication, on a listener "
        "of its own (keep it off the public network); /metrics on the main port stays "
        "admin-only. Default: no separate listener.",
    )
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    server: ServerSettings = ServerSettings()
    requests: RequestSettings = RequestSettings()
    resilience: ResilienceSettings = ResilienceSettings()
    cache: CacheSettings = CacheSettings()
    limits: TrafficSettings = TrafficSettings()
    jobs: JobSettings = JobSettings()
    outbound: OutboundSettings = OutboundSettings()
    webhooks: WebhookSettings = WebhookSettings()
    telegram: TelegramSettings = TelegramSettings()
    cors: CorsSettings = CorsSettings()
    enhancer: EnhancerSettings = EnhancerSettings()
    web: WebSettings = WebSettings()
    log: LogSettings = LogSettings()
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Catalogue entries added or replaced by name."
    )
    routes: dict[str, RouteSettings] = Field(default_factory=dict)

    @field_validator("metrics_bind")
    @classmethod
    def _metrics_bind_is_host_and_port(cls, value: str | None) -> str | None:
        if value is not None:
            split_bind(value)
        return value

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """``metrics_bind`` as (host, port), or None when there is no separate listener."""
        return None if self.metrics_bind is None else split_bind(self.metrics_bind)

    @field_validator("routes", mode="before")
    @classmethod
    def _routes_may_be_plain_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"targets": v} if isinstance(v, list) else v for k, v in value.items()}
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence: arguments, then environment, then the YAML file."""
        return init_settings, env_settings, YamlFileSource(settings_cls)

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


def split_bind(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 hosts in brackets: ``[::1]:9100``) as (host, port)."""
    host, sep, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, e.g. 127.0.0.1:9100, got {value!r}")
    return host, int(port)


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(value: Any, path: str) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of the YAML document."""
    if isinstance(value, dict):
        return {k: _substitute(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigurationError(
            f"{path.lstrip('.')} refers to ${{{name}}}, which is not set in the environment",
            param=path.lstrip("."),
        )

    return _ENV_REFERENCE.sub(lookup, value)


class YamlFileSource(PydanticBaseSettingsSource):
    """``imagegate.yaml`` (or ``IMAGEGATE_CONFIG_FILE``) as a settings source."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read at once in __call__

    def __call__(self) -> dict[str, Any]:
        explicit = os.environ.get("IMAGEGATE_CONFIG_FILE")
        path = Path(explicit) if explicit else Path("imagegate.yaml")
        if not path.exists():
            if explicit:
                raise ConfigurationError(
                    f"IMAGEGATE_CONFIG_FILE={explicit} does not exist",
                    param="IMAGEGATE_CONFIG_FILE",
                )
            return {}
        try:
            document = yaml.safe_load(path.read_text("utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path} is not valid YAML: {exc}", param=str(path)) from exc
        if not isinstance(document, dict):
            raise ConfigurationError(f"{path} must be a mapping of settings", param=str(path))
        substituted: dict[str, Any] = _substitute(document, "")
        return {**substituted, "config_file": path}


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, turning pydantic's report into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        parts = [str(part) for part in first["loc"]]
        name = "IMAGEGATE_" + "__".join(parts).upper()
        secret = any(w in name for w in ("KEY", "SECRET", "PASSWORD", "TOKEN", "URL"))
        shown = not secret and not isinstance(first["input"], dict)
        got = f" (got {first['input']!r})" if shown else ""
        raise ConfigurationError(
            f"invalid setting {name}{got}: {first['msg']}. Fix: correct {name} in the "
            f"environment or {'.'.join(parts)} in imagegate.yaml, or unset it for the default",
            param=name,
        ) from exc
