"""The queue: claims, leases and control requests (store), and the runners' wake-ups (signals)."""
