"""Migrations are the one schema path, on SQLite and Postgres."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runwire.core import Stores
from runwire.db.engine import Database, DatabaseNotMigrated, DatabaseUrlInvalid, engine_for


async def test_unmigrated_postgres_is_refused_with_the_fix(empty_postgres_url: str) -> None:
    with pytest.raises(DatabaseNotMigrated, match="run `runwire migrate`"):
        async with Database.open(empty_postgres_url):
            pass


async def _migrate_twice(url: str) -> None:
    for _ in range(2):
        async with Database.open(url, migrate=True) as database:
            assert await database.pending_migrations() == []


async def test_migrating_sqlite_twice_is_harmless(tmp_path: Path) -> None:
    await _migrate_twice(f"sqlite:///{tmp_path / 'db.sqlite'}")


async def test_migrating_postgres_twice_is_harmless(empty_postgres_url: str) -> None:
    # From empty: other tests get clones of a migrated template, this one runs every migration.
    await _migrate_twice(empty_postgres_url)


def test_unknown_database_url_names_the_problem_without_the_password() -> None:
    with pytest.raises(DatabaseUrlInvalid, match=r"unsupported database URL mysql://x:\*\*\*@h/db"):
        engine_for("mysql://x:secret@h/db")


async def test_concurrent_saves_of_one_scenario_make_one_version(postgres_url: str) -> None:
    """Replicas starting together load the same shipped scenario: one version, no error."""
    async with Database.open(postgres_url, migrate=True) as database:
        stores = Stores.on(database)
        definition = {"name": "shipped", "steps": [{"key": "a", "kind": "sleep"}]}
        saved = await asyncio.gather(
            *(
                stores.scenarios.save_scenario("workspace-a", "shipped", "", definition, "test")
                for _ in range(8)
            )
        )
    assert {version.version for version in saved} == {1}
