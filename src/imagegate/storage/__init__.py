"""Where image bytes live; knows nothing of SQL or requests."""
