"""Jobs that outlive a request: the durable queue, its workers, and webhook deliveries."""
