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
)

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
