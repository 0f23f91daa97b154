"""The image library: thumbnails, placeholders, alt text, tags, pins, prompt search.

Images get the columns the library filters on (copied from their generation: owner, model,
provider, outcome), so each list query walks one index in keyset order; tags also go in a side
table so a tag filter is an index lookup. Prompt search is each database's own: a generated
``tsvector`` column with a GIN index on PostgreSQL, an FTS5 table kept by triggers on SQLite.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.String(40)
COPIED = ("user_id", "model", "provider", "outcome")

SQLITE_SEARCH = (
    # generation_id is indexed too (a single hex token): the delete trigger finds a row by it
    # through the full-text index instead of scanning, and no rowid has to match the one of
    # generations (which VACUUM may renumber).
    "CREATE VIRTUAL TABLE generations_fts USING fts5("
    "generation_id, prompt, tokenize = 'unicode61 remove_diacritics 0')",
    "INSERT INTO generations_fts (generation_id, prompt) SELECT id, prompt FROM generations",
    "CREATE TRIGGER generations_fts_insert AFTER INSERT ON generations BEGIN "
    "INSERT INTO generations_fts (generation_id, prompt) VALUES (NEW.id, NEW.prompt); END",
    "CREATE TRIGGER generations_fts_delete AFTER DELETE ON generations BEGIN "
    "DELETE FROM generations_fts WHERE rowid IN (SELECT rowid FROM generations_fts "
    "WHERE generations_fts MATCH 'generation_id : \"' || OLD.id || '\"'); END",
    "CREATE TRIGGER generations_fts_update AFTER UPDATE OF prompt ON generations BEGIN "
    "UPDATE generations_fts SET prompt = NEW.prompt WHERE rowid IN (SELECT rowid FROM "
    "generations_fts WHERE generations_fts MATCH 'generation_id : \"' || OLD.id || '\"'); END",
)

POSTGRES_SEARCH = (
    "ALTER TABLE generations ADD COLUMN prompt_search tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, prompt)) STORED",
    "CREATE INDEX ix_generations_prompt_search ON generations USING gin (prompt_search)",
)


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("user_id", ID, nullable=True))
        batch.add_column(sa.Column("model", sa.String(200), nullable=True))
        batch.add_column(sa.Column("provider", sa.String(100), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(16), nullable=True))
        batch.add_column(sa.Column("thumbnail_key", sa.String(80), nullable=True))
        batch.add_column(sa.Column("placeholder", sa.Text, nullable=True))
        batch.add_column(sa.Column("alt_text", sa.Text, nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()))
    for column in COPIED:
        op.execute(
            f"UPDATE images SET {column} = (SELECT g.{column} FROM generations g "  # noqa: S608
            "WHERE g.id = images.generation_id)"
        )
    with op.batch_alter_table("images") as batch:
        batch.alter_column("user_id", existing_type=ID, nullable=False)
        batch.alter_column("model", existing_type=sa.String(200), nullable=False)
        batch.alter_column("outcome", existing_type=sa.String(16), nullable=False)
    op.create_index("ix_images_thumbnail_key", "images", ["thumbnail_key"])
    op.create_index("ix_images_user_id_created_at_id", "images", ["user_id", "created_at", "id"])
    op.create_index("ix_images_created_at_id", "images", ["created_at", "id"])
    for column in ("model", "provider", "outcome"):
        op.create_index(
            f"ix_images_user_id_{column}_created_at_id",
            "images",
            ["user_id", column, "created_at", "id"],
        )
    op.create_table(
        "image_tags",
        sa.Column("image_id", ID),
        sa.Column("tag", sa.String(50)),
        sa.Column("user_id", ID, nullable=False),
        sa.PrimaryKeyConstraint("image_id", "tag", name="pk_image_tags"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name="fk_image_tags_image_id_images"),
    )
    op.create_index("ix_image_tags_tag_user_id", "image_tags", ["tag", "user_id"])
    statements = SQLITE_SEARCH if op.get_bind().dialect.name == "sqlite" else POSTGRES_SEARCH
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS generations_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS generations_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_generations_prompt_search")
        op.execute("ALTER TABLE generations DROP COLUMN IF EXISTS prompt_search")
    op.drop_table("image_tags")
    for name in (
        "ix_images_thumbnail_key",
        "ix_images_user_id_created_at_id",
        "ix_images_created_at_id",
        *(f"ix_images_user_id_{c}_created_at_id" for c in ("model", "provider", "outcome")),
    ):
        op.drop_index(name, table_name="images")
    with op.batch_alter_table("images") as batch:
        for column in (*COPIED, "thumbnail_key", "placeholder", "alt_text", "tags", "pinned"):
            batch.drop_column(column)
