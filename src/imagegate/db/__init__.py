"""SQL records (SQLite by default, PostgreSQL at scale); never touches image bytes."""
