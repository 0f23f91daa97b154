"""What an operator watches: Prometheus metrics (``metrics``) fed by thin wrappers."""
