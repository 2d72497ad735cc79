"""Claim queued executions, run their steps, react to control requests."""
