"""Test databases are clones of a migrated template: the clone must be what migrating makes.

`runwire migrate` runs here on an empty database every run, so a template built by an earlier
run cannot hide a migration that no longer works.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
from tests.support import postgres

from runwire.db.engine import Database

# What a schema is made of, as the catalog states it: columns, indexes, constraints, sequences.
SCHEMA = {
    "columns": "SELECT table_name, column_name, data_type, character_maximum_length,"
    " is_nullable, column_default FROM information_schema.columns"
    " WHERE table_schema = 'public' ORDER BY table_name, column_name",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
    " ORDER BY indexname",
    "constraints": "SELECT conrelid::regclass::text AS relation, conname,"
    " pg_get_constraintdef(oid) AS definition FROM pg_constraint"
    " WHERE connamespace = 'public'::regnamespace ORDER BY relation, conname",
    "sequences": "SELECT sequence_name, data_type FROM information_schema.sequences"
    " WHERE sequence_schema = 'public' ORDER BY sequence_name",
    "migrations": "SELECT app_name, name FROM migration ORDER BY app_name, name",
}


async def _schema(url: str) -> dict[str, list[tuple[object, ...]]]:
    connection = await asyncpg.connect(url, timeout=3)
    try:
        return {
            part: [tuple(row) for row in await connection.fetch(query)]
            for part, query in SCHEMA.items()
        }
    finally:
        await connection.close()


async def test_runwire_migrate_on_an_empty_database_makes_the_template_schema(
    empty_postgres_url: str, postgres_url: str
) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "runwire.cli", "migrate"],
        env={**os.environ, "RUNWIRE_DATABASE_URL": empty_postgres_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    async with Database.open(empty_postgres_url) as database:  # refuses an unmigrated one
        assert await database.pending_migrations() == []
    migrated, cloned = await _schema(empty_postgres_url), await _schema(postgres_url)
    assert all(migrated.values()), migrated
    assert cloned == migrated


async def test_clones_can_be_made_at_once() -> None:
    tag = secrets.token_hex(4)
    async with asyncio.timeout(30):
        urls = await asyncio.gather(
            *(postgres.create_database(f"runwire_clone_{tag}_{n}") for n in range(4))
        )
    try:
        for url in urls:
            async with Database.open(url) as database:
                assert await database.pending_migrations() == []
    finally:
        for url in urls:
            await postgres.drop_database(url.rsplit("/", 1)[1])


def test_a_changed_or_added_migration_names_a_new_template(tmp_path: Path) -> None:
    copied = shutil.copytree(postgres.MIGRATIONS, tmp_path / "migrations")
    first = postgres.template_name(copied)
    assert first == postgres.template_name(postgres.MIGRATIONS)
    assert first.startswith(postgres.TEMPLATE_PREFIX)
    assert len(first) <= 63 - len("_building")  # Postgres names are at most 63 bytes

    migration = sorted(copied.glob("*.py"))[-1]
    migration.write_text(migration.read_text() + "\n# changed\n")
    changed = postgres.template_name(copied)
    (copied / "runwire_9999_99_99t00_00_00_000000.py").write_text("# added\n")
    added = postgres.template_name(copied)
    assert len({first, changed, added}) == 3


async def test_runs_starting_together_build_one_template(tmp_path: Path) -> None:
    # Another set of migrations (a comment added): its template is missing, so each call
    # would build it; the lock lets one build while the others wait, then find it.
    copied = shutil.copytree(postgres.MIGRATIONS, tmp_path / "migrations")
    (copied / "runwire_9999_99_99t00_00_00_000000.py").write_text(f"# {tmp_path}\n")
    name = postgres.template_name(copied)
    try:
        async with asyncio.timeout(60):
            built = await asyncio.gather(*(postgres.ensure_template(copied) for _ in range(3)))
        assert built == [name] * 3
        clone = f"runwire_clone_{secrets.token_hex(4)}"
        async with Database.open(await _clone(clone, name)) as database:
            assert await database.pending_migrations() == []
        await postgres.drop_database(clone)
    finally:
        await postgres.drop_database(name)


async def _clone(name: str, template: str) -> str:
    async with postgres.admin() as connection:
        await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return f"{postgres.POSTGRES_SERVER}/{name}"
