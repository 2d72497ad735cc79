"""`runwire serve | migrate | export-schema`."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from runwire.settings import Settings


@click.group()
def main() -> None:
    """Runwire: run executions and watch them live over GraphQL."""


@main.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Serve GraphQL, SSE and the runner (on the embedded SQLite default unless configured)."""
    import uvicorn

    from runwire.app import create_app

    settings = Settings.from_env()
    if host is not None:
        settings = settings.with_overrides(host=host)
    if port is not None:
        settings = settings.with_overrides(port=port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=int(settings.grace_seconds) + 5,
    )


@main.command()
def migrate() -> None:
    """Apply pending database migrations (needed once per Postgres database)."""
    from runwire.db.engine import Database

    async def run() -> None:
        async with Database.open(Settings.from_env().effective_database_url, migrate=True):
            pass

    asyncio.run(run())
    click.echo("migrations applied")


@main.command("export-schema")
def export_schema() -> None:
    """Print the GraphQL schema (SDL) — the contract in schema/schema.graphql."""
    from runwire.graphql.schema import build_schema

    sys.stdout.write(build_schema().as_str() + "\n")


if __name__ == "__main__":
    main()
