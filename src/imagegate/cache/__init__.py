"""Fast tiers in front of the durable cache index (which lives in SQL, ``db/cache.py``)."""
