"""Migrations are the one schema path, on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from aiosqlite.core import _connection_worker_thread

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


def _sqlite_worker_threads() -> set[threading.Thread]:
    """aiosqlite's worker threads alive now: one per connection not yet closed."""
    return {
        thread
        for thread in threading.enumerate()
        if getattr(thread, "_target", None) is _connection_worker_thread
    }


async def _threads_ended(before: set[threading.Thread]) -> bool:
    """Whether every connection thread started since `before` has ended; threads of earlier
    tests may end meanwhile, so these are compared by identity, not counted."""
    for _ in range(200):
        if _sqlite_worker_threads() <= before:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_sqlite_writer_cancelled_while_it_waits_for_the_lock_leaves_nothing_open(
    tmp_path: Path,
) -> None:
    """A cancelled writer must not keep a connection: its thread would keep the process alive
    at exit and, once BEGIN IMMEDIATE got the lock, hold the database's write lock for good."""
    async with Database.open(f"sqlite:///{tmp_path / 'db.sqlite'}", migrate=True) as database:
        before = _sqlite_worker_threads()
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold_the_write_lock() -> None:
            async with database.write():
                holding.set()
                await release.wait()

        async def write_after_it() -> None:
            async with database.write():
                pass

        holder = asyncio.create_task(hold_the_write_lock())
        await holding.wait()
        waiter = asyncio.create_task(write_after_it())
        await asyncio.sleep(0.2)  # long enough to reach BEGIN IMMEDIATE; any point is a fault
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await holder
        assert await _threads_ended(before)
        # Nothing holds the write lock: a new writer gets it at once.
        async with asyncio.timeout(5), database.write():
            pass


async def test_a_sqlite_transaction_whose_block_fails_closes_its_connection(
    tmp_path: Path,
) -> None:
    async with Database.open(f"sqlite:///{tmp_path / 'db.sqlite'}", migrate=True) as database:
        before = _sqlite_worker_threads()

        async def fail_in(transaction: Any, error: BaseException) -> None:
            async with transaction:
                await database.fetch("SELECT 1")
                raise error

        with pytest.raises(RuntimeError, match="the block failed"):
            await fail_in(database.write(), RuntimeError("the block failed"))
        with pytest.raises(asyncio.CancelledError):
            await fail_in(database.snapshot(), asyncio.CancelledError())
        assert await _threads_ended(before)
