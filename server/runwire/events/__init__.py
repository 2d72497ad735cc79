"""The event path: batched writer (log), in-process fan-out (hub), cross-process seam (bus)."""
