"""Alembic environment: runs on the connection ``imagegate migrate`` hands it."""

from __future__ import annotations

from alembic import context

from imagegate.db.tables import include_object, with_postgresql_options

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `imagegate migrate`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=with_postgresql_options(),
    render_as_batch=True,
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
