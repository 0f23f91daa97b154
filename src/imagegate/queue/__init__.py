"""The durable job queue: its protocol, its SQL implementation, the worker loop."""
