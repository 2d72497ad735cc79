"""Runwire: run executions and watch them live over GraphQL."""

__version__ = "0.1.0"
