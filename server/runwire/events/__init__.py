"""The event path: the batched writer (log), the publisher, the hub (fan-out) and the bus."""
