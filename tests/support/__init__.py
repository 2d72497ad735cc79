"""Shared test helpers: real Postgres databases and Redis for integration tests."""
