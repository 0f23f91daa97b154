"""Pay once: cache entries, in-flight claims, budgets and their ledger, idempotency keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(40)
Timestamp = sa.DateTime(timezone=True)
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIMITS = ("budget_micro_usd_day", "budget_micro_usd_month", "images_per_minute", "images_per_day")


def upgrade() -> None:
    for table in ("users", "api_keys"):
        with op.batch_alter_table(table) as batch:
            for name in LIMITS:
                batch.add_column(sa.Column(name, sa.BigInteger, nullable=True))
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("source_generation_id", ID, nullable=True))
    op.create_table(
        "cache_entries",
        sa.Column("scope", sa.String(40)),
        sa.Column("cache_key", sa.String(64)),
        sa.Column("generation_id", ID, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("scope", "cache_key", name="pk_cache_entries"),
        sa.ForeignKeyConstraint(
            ["generation_id"], ["generations.id"], name="fk_cache_entries_generation_id_generations"
        ),
    )
    op.create_index("ix_cache_entries_expires_at", "cache_entries", ["expires_at"])
    op.create_table(
        "flights",
        sa.Column("scope", sa.String(40)),
        sa.Column("cache_key", sa.String(64)),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("failed_at", Timestamp, nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("scope", "cache_key", name="pk_flights"),
    )
    op.create_table(
        "budget_counters",
        sa.Column("subject", sa.String(60)),
        sa.Column("window", sa.String(16)),
        sa.Column("window_start", Timestamp),
        sa.Column("spent_micro_usd", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reserved_micro_usd", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("images", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("subject", "window", "window_start", name="pk_budget_counters"),
    )
    op.create_table(
        "budget_ledger",
        sa.Column("id", AutoId, autoincrement=True),
        sa.Column("subject", sa.String(60), nullable=False),
        sa.Column("generation_id", ID, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("micro_usd", sa.BigInteger, nullable=False),
        sa.Column("images", sa.Integer, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_budget_ledger"),
    )
    op.create_index("ix_budget_ledger_subject", "budget_ledger", ["subject"])
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", ID),
        sa.Column("key", sa.String(255)),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("response_status", sa.Integer, nullable=True),
        sa.Column("response_headers", sa.JSON, nullable=True),
        sa.Column("response_body", sa.LargeBinary, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key", name="pk_idempotency_keys"),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    for table in (
        "idempotency_keys",
        "budget_ledger",
        "budget_counters",
        "flights",
        "cache_entries",
    ):
        op.drop_table(table)
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("source_generation_id")
    for table in ("api_keys", "users"):
        with op.batch_alter_table(table) as batch:
            for name in LIMITS:
                batch.drop_column(name)
