"""The SQL schema, as SQLAlchemy Core tables. Migrations (``migrations/``) must match it."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def with_postgresql_options() -> sa.MetaData:
    """``metadata`` with the PostgreSQL half of its partial indexes, for what compares or
    creates the schema (autogenerate, the migration tests).

    Naming a ``postgresql_*`` option in a table imports the PostgreSQL dialect (about 2 MiB
    resident) to validate it, so the tables leave it out: a serving process on SQLite never
    loads that dialect, and one on PostgreSQL needs no index options to run queries.
    """
    for table in metadata.tables.values():
        for index in table.indexes:
            where = index.dialect_kwargs.get("sqlite_where")
            if where is not None:
                index.dialect_kwargs["postgresql_where"] = where
    return metadata


ID = sa.String(40)
Timestamp = sa.DateTime(timezone=True)
Money = sa.BigInteger  # micro-USD: exact integer arithmetic for costs and budgets
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    *(
        sa.Column(name, sa.BigInteger, nullable=True)
        for name in (
            "budget_micro_usd_day",
            "budget_micro_usd_month",
            "images_per_minute",
            "images_per_day",
        )
    ),
    # the user's own prompt-enhancement choice (0010); NULL = each model's default
    sa.Column("enhance_prompt", sa.Boolean, nullable=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False, index=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("revoked_at", Timestamp, nullable=True),
    *(
        sa.Column(name, sa.BigInteger, nullable=True)
        for name in (
            "budget_micro_usd_day",
            "budget_micro_usd_month",
            "images_per_minute",
            "images_per_day",
        )
    ),
    # traffic limits (services/traffic.py): NULL = the configured default, 0 = unlimited
    sa.Column("requests_per_minute", sa.Integer, nullable=True),
    sa.Column("concurrent_generations", sa.Integer, nullable=True),
    # signs this key's webhooks (Standard Webhooks, whsec_...); shown once, needed to sign
    sa.Column("webhook_secret", sa.String(100), nullable=True),
    sa.Column("expires_at", Timestamp, nullable=True),  # NULL = never
    sa.Column("last_used_at", Timestamp, nullable=True),  # at most a minute stale
)

generations = sa.Table(
    "generations",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("api_key_id", ID, sa.ForeignKey("api_keys.id"), nullable=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(100), nullable=True),
    sa.Column("upstream_model", sa.String(200), nullable=True),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("cache_key", sa.String(64), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("attempt_log", sa.JSON, nullable=False, server_default="[]"),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("estimated_cost_micro_usd", Money, nullable=False),
    sa.Column("cost_micro_usd", Money, nullable=False),
    sa.Column("saved_cost_micro_usd", Money, nullable=False, server_default="0"),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("completed_at", Timestamp, nullable=False),
    sa.Column("source_generation_id", ID, nullable=True),
    # the prompt enhancer's rewrite sent to the provider (0009); NULL = the prompt as asked
    sa.Column("enhanced_prompt", sa.Text, nullable=True),
    sa.Index("ix_generations_user_id_created_at", "user_id", "created_at"),
)

images = sa.Table(
    "images",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("generation_id", ID, sa.ForeignKey("generations.id"), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False, index=True),
    sa.Column("storage_key", sa.String(80), nullable=False),
    sa.Column("mime", sa.String(40), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("byte_size", sa.Integer, nullable=False),
    sa.Column("revised_prompt", sa.Text, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    # The library (0007). What the list filters on is copied from the generation when the
    # image is recorded (facts that never change), so every list query walks one index of
    # this table in keyset order instead of joining.
    sa.Column("user_id", ID, nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(100), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("thumbnail_key", sa.String(80), nullable=True, index=True),
    sa.Column("placeholder", sa.Text, nullable=True),
    sa.Column("alt_text", sa.Text, nullable=True),
    sa.Column("tags", sa.JSON, nullable=False, server_default="[]"),
    sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
    # newest first, for one user and for admins looking at everyone's
    sa.Index("ix_images_user_id_created_at_id", "user_id", "created_at", "id"),
    sa.Index("ix_images_created_at_id", "created_at", "id"),
    sa.Index("ix_images_user_id_model_created_at_id", "user_id", "model", "created_at", "id"),
    sa.Index("ix_images_user_id_provider_created_at_id", "user_id", "provider", "created_at", "id"),
    sa.Index("ix_images_user_id_outcome_created_at_id", "user_id", "outcome", "created_at", "id"),
)

image_tags = sa.Table(
    "image_tags",
    metadata,
    # One row per tag of an image, beside images.tags (what is shown), so a tag filter is an
    # index lookup on both databases (no JSON operators, which differ between them).
    sa.Column("image_id", ID, sa.ForeignKey("images.id"), primary_key=True),
    sa.Column("tag", sa.String(50), primary_key=True),
    sa.Column("user_id", ID, nullable=False),
    # the image's created_at (0011), so a tag filter walks one of these indexes in the
    # library's keyset order and stops after a page, instead of probing every tagged image
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index(
        "ix_image_tags_tag_user_id_created_at_image_id", "tag", "user_id", "created_at", "image_id"
    ),
    sa.Index("ix_image_tags_tag_created_at_image_id", "tag", "created_at", "image_id"),
)

PROMPT_SEARCH_OBJECTS = frozenset(
    {
        # PostgreSQL: generations.prompt_search (tsvector, generated) and its GIN index; the
        # copy on images (0011, kept by triggers) and its GIN index
        "prompt_search",
        "ix_generations_prompt_search",
        "ix_images_prompt_search",
        # SQLite: the FTS5 table over generations.prompt and its shadow tables; the FTS rowid
        # of each generation's prompt, on generations and images (0011, kept by triggers)
        "search_rowid",
        "generations_fts",
        *(f"generations_fts_{part}" for part in ("data", "idx", "content", "docsize", "config")),
    }
)
"""Full-text search objects each database has in its own form (migrations 0007, 0011), outside
this metadata: they are not compared with it."""


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic's filter: leave the search objects out of schema comparisons."""
    return not (reflected and compare_to is None and name in PROMPT_SEARCH_OBJECTS)


events = sa.Table(
    "events",
    metadata,
    sa.Column("id", AutoId, primary_key=True, autoincrement=True),
    sa.Column("generation_id", ID, sa.ForeignKey("generations.id"), nullable=True, index=True),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

cache_entries = sa.Table(
    "cache_entries",
    metadata,
    sa.Column("scope", sa.String(40), primary_key=True),
    sa.Column("cache_key", sa.String(64), primary_key=True),
    sa.Column("generation_id", ID, sa.ForeignKey("generations.id"), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=True, index=True),
)

flights = sa.Table(
    "flights",
    metadata,
    sa.Column("scope", sa.String(40), primary_key=True),
    sa.Column("cache_key", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("failed_at", Timestamp, nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
)

budget_counters = sa.Table(
    "budget_counters",
    metadata,
    sa.Column("subject", sa.String(60), primary_key=True),
    sa.Column("window", sa.String(16), primary_key=True),
    sa.Column("window_start", Timestamp, primary_key=True),
    sa.Column("spent_micro_usd", Money, nullable=False, server_default="0"),
    sa.Column("reserved_micro_usd", Money, nullable=False, server_default="0"),
    sa.Column("images", sa.Integer, nullable=False, server_default="0"),
)

budget_ledger = sa.Table(
    "budget_ledger",
    metadata,
    sa.Column("id", AutoId, primary_key=True, autoincrement=True),
    sa.Column("subject", sa.String(60), nullable=False, index=True),
    sa.Column("generation_id", ID, nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("micro_usd", Money, nullable=False),
    sa.Column("images", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

budget_reservations = sa.Table(
    "budget_reservations",
    metadata,
    # what a request in flight holds; gone when it settles, or swept once it expires (the
    # process holding it died)
    sa.Column("id", ID, primary_key=True),
    sa.Column("counters", sa.JSON, nullable=False),
    sa.Column("micro_usd", Money, nullable=False),
    sa.Column("images", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False, index=True),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("user_id", ID, primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("response_status", sa.Integer, nullable=True),
    sa.Column("response_headers", sa.JSON, nullable=True),
    sa.Column("response_body", sa.LargeBinary, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False, index=True),
)

jobs = sa.Table(
    "jobs",
    metadata,
    # ids sort in creation order (models.job_id_at): FIFO and keyset order in one column
    sa.Column("id", ID, primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("api_key_id", ID, sa.ForeignKey("api_keys.id"), nullable=True),
    sa.Column("batch_id", ID, nullable=True, index=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("cache_mode", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("stage", sa.String(16), nullable=True),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("run_after", Timestamp, nullable=False),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_expires_at", Timestamp, nullable=True),
    sa.Column("cancel_requested_at", Timestamp, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("started_at", Timestamp, nullable=True),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.Column("generation_id", ID, nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("error_type", sa.String(64), nullable=True),
    sa.Column("error_param", sa.String(100), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("webhook_url", sa.Text, nullable=True),
    sa.Column("webhook_events", sa.JSON, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=True),
    # what workers claim next: queued jobs by priority, then FIFO
    sa.Index(
        "ix_jobs_queued",
        "priority",
        "id",
        sqlite_where=sa.text("status = 'queued'"),  # and on PostgreSQL: with_postgresql_options
    ),
    # expired leases, and the running jobs of a batch
    sa.Index("ix_jobs_status_lease_expires_at", "status", "lease_expires_at"),
    sa.Index("ix_jobs_user_id_id", "user_id", "id"),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("api_key_id", ID, sa.ForeignKey("api_keys.id"), nullable=True),
    sa.Column("concurrency", sa.Integer, nullable=False),
    # jobs of the batch running now: claims take a place only while it is below concurrency
    sa.Column("running", sa.Integer, nullable=False, server_default="0"),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    # the webhook-id header: the same for every retry of one event
    sa.Column("id", ID, primary_key=True),
    sa.Column("job_id", ID, nullable=False, index=True),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Timestamp, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("delivered_at", Timestamp, nullable=True),
    sa.Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        sqlite_where=sa.text("status = 'pending'"),  # and on PostgreSQL: with_postgresql_options
    ),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", AutoId, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", ID, nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)
