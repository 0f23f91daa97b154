"""Chat front ends: they run on the same services as the HTTP API (``container.Services``)."""
