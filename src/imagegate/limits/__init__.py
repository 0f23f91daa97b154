"""Per-key traffic limits: moving windows and concurrency slots, in memory or in Redis."""
