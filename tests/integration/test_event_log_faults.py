"""The event log loses nothing when a write fails at any point: a fault injected at every await
of the write path, one at a time, on SQLite and Postgres.

The faults are what a lost connection does: raise where the call was, with the transaction
rolled back — or, at the very end, after the COMMIT went through, so the log cannot tell whether
its events were stored. Whatever the point, every execution's stored seqs must be exactly
1..last afterwards, and what was published exactly what was stored, each once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.support import postgres

from runwire.db.engine import Database
from runwire.db.events import EventRepository
from runwire.domain.clock import utc_now
from runwire.domain.models import Event, EventType
from runwire.events.log import EventLog

BURSTS, PER_BURST = 3, 40
EXECUTIONS = ("a", "b")


class Faults:
    """Counts the write path's steps and fails the chosen one, as a lost connection would."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.count = 0

    def step(self) -> None:
        self.count += 1
        if self.count == self.fail_at:
            raise ConnectionResetError(f"injected at step {self.count}")


class FaultyConnection:
    """The driver connection of a write transaction, failing where the faults say."""

    def __init__(self, real: Any, faults: Faults) -> None:
        self._real, self._faults = real, faults

    async def executemany(self, *args: Any) -> Any:
        self._faults.step()
        return await self._real.executemany(*args)

    async def copy_records_to_table(self, *args: Any, **kwargs: Any) -> Any:
        self._faults.step()
        return await self._real.copy_records_to_table(*args, **kwargs)

    async def fetch(self, *args: Any) -> Any:
        self._faults.step()
        return await self._real.fetch(*args)


class FaultyDatabase:
    """The real database, with a fault point before and in every statement and around COMMIT."""

    def __init__(self, real: Database, faults: Faults) -> None:
        self._real, self._faults = real, faults

    @property
    def is_postgres(self) -> bool:
        return self._real.is_postgres

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        self._faults.step()  # BEGIN
        async with self._real.write():
            yield
            self._faults.step()  # before COMMIT: rolled back
        self._faults.step()  # after COMMIT: stored, and the caller cannot tell

    async def fetch(self, sql: str, *args: Any) -> Any:
        self._faults.step()
        return await self._real.fetch(sql, *args)

    def connection(self) -> FaultyConnection:
        return FaultyConnection(self._real.connection(), self._faults)


class Published:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, events: Sequence[Event]) -> None:
        self.events.extend(events)


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        async with Database.open(f"sqlite:///{tmp_path / 'faults.sqlite'}", migrate=True) as db:
            yield db
        return
    async with (
        postgres.fresh_database() as url,
        Database.open(url, migrate=True) as db,
    ):
        yield db


async def _run(database: Database, faults: Faults, prefix: str) -> tuple[Published, list[str]]:
    """Append every execution's events in bursts, wait until all are stored; what got out."""
    published = Published()
    events = EventRepository(database)
    faulty = EventRepository(FaultyDatabase(database, faults))  # type: ignore[arg-type]
    ids = [f"{prefix}-{name}" for name in EXECUTIONS]
    async with asyncio.timeout(20), EventLog.running(faulty, published, 0.001) as log:
        for burst in range(BURSTS):
            for execution_id in ids:
                for i in range(1, PER_BURST + 1):
                    seq = burst * PER_BURST + i
                    log.append(
                        Event(execution_id, seq, utc_now(), EventType.OUTPUT, {"n": seq}, "s", 1)
                    )
            await asyncio.sleep(0.005)
        await log.persisted()
    for execution_id in ids:
        stored = [e.seq for e in await events.events(execution_id, 0, limit=1000)]
        assert stored == list(range(1, BURSTS * PER_BURST + 1)), (faults.fail_at, execution_id)
    return published, ids


async def test_a_fault_at_any_step_loses_and_repeats_nothing(database: Database) -> None:
    clean = Faults()
    await _run(database, clean, "clean")
    steps = clean.count
    assert steps >= 10  # begin, statements, commit, for several batches

    for fail_at in range(1, steps + 1):
        published, ids = await _run(database, Faults(fail_at), f"fault-{fail_at}")
        for execution_id in ids:
            seqs = [e.seq for e in published.events if e.execution_id == execution_id]
            assert seqs == list(range(1, BURSTS * PER_BURST + 1)), (fail_at, execution_id)
