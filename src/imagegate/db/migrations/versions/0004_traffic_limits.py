"""Per-key traffic limits: requests per minute and concurrent generations.

NULL means the configured default (``IMAGEGATE_LIMITS__*``), 0 means unlimited.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("requests_per_minute", "concurrent_generations")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
