"""Renewing leases locks executions in id order, as the event log's projection does.

Found by P7 (bench/capacity.py): with a thousand running executions, the runner's renewal (one
UPDATE over every held row, locked in whatever order the plan read them) and the projection of
an event batch (its rows locked in id order) each waited for a row the other held. Postgres
broke the deadlock by failing one of them: a failed renewal, then leases given up and taken
over, or the stopBatch that shared the projection's transaction answered "Internal error".

The test makes the renewal's natural order the reverse of id order (rows written highest id
first, read by a sequential scan), holds the lowest id as the projection would on its way up,
then asks for the highest: in id order the renewal holds nothing while it waits, so nothing
deadlocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from tests.support import postgres

from runwire.db.engine import Database
from runwire.domain.models import Lease
from runwire.queue.store import ExecutionQueue

OWNER = "runner-a"
IDS = [f"exec-{n:04d}" for n in range(200)]


async def test_renewal_waits_in_id_order_and_never_deadlocks() -> None:
    async with postgres.fresh_database() as url:
        setup = await asyncpg.connect(url)
        try:
            # Highest id first, so a sequential scan meets the rows in reverse id order.
            await setup.executemany(
                "INSERT INTO runwire_execution (id, status, owner, lease_expires_at,"
                " lease_generation) VALUES ($1, 'RUNNING', $2, $3, 1)",
                [(i, OWNER, datetime.now(UTC) + timedelta(seconds=60)) for i in reversed(IDS)],
            )
            # Every new session of this database plans a sequential scan.
            database_name = url.rsplit("/", 1)[1]
            await setup.execute(
                f'ALTER DATABASE "{database_name}" SET enable_indexscan = off;'
                f' ALTER DATABASE "{database_name}" SET enable_bitmapscan = off'
            )
        finally:
            await setup.close()
        async with Database.open(url) as database:
            queue = ExecutionQueue(database)
            projection = await asyncpg.connect(url)
            try:
                async with projection.transaction():
                    await projection.execute(
                        "SELECT id FROM runwire_execution WHERE id = $1 FOR UPDATE", IDS[0]
                    )
                    leases = {i: Lease(owner=OWNER, generation=1) for i in IDS}
                    renewal = asyncio.create_task(queue.renew_leases(OWNER, leases, 6.0))
                    # The renewal is waiting (for the lowest id, or holding the rest).
                    await _until_waiting(projection, url)
                    assert not renewal.done()
                    # Deadlock detection runs after deadlock_timeout (1 s); a deadlock fails
                    # this statement or the renewal.
                    await projection.execute(
                        "SELECT id FROM runwire_execution WHERE id = $1 FOR UPDATE", IDS[-1]
                    )
                renewed = await asyncio.wait_for(renewal, 30)
            finally:
                await projection.close()
        assert renewed == set(IDS)


async def _until_waiting(connection: asyncpg.Connection, url: str) -> None:
    """Until another session of this database waits for a lock."""
    database_name = url.rsplit("/", 1)[1]
    async with asyncio.timeout(30):
        while not await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
            database_name,
        ):
            await asyncio.sleep(0.02)


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, migrated database of each kind."""
    async with contextlib.AsyncExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'leases.sqlite'}"
            if request.param == "sqlite"
            else await stack.enter_async_context(postgres.fresh_database())
        )
        yield await stack.enter_async_context(Database.open(url, migrate=True))


async def _running(database: Database, rows: Iterable[tuple[str, str, datetime, int]]) -> None:
    """RUNNING executions, each (id, owner, lease_expires_at, lease_generation)."""
    async with database.write():
        for row in rows:
            await database.fetch(
                "INSERT INTO runwire_execution (id, status, owner, lease_expires_at,"
                " lease_generation) VALUES ({}, 'RUNNING', {}, {}, {})",
                *row,
            )


async def test_more_leases_than_one_statement_renews_are_all_renewed(database: Database) -> None:
    """Renewal goes in chunks: every held lease past the first chunk is renewed too, and one
    taken by another runner or re-leased under a newer generation is reported as not held."""
    ids = [f"exec-{n:04d}" for n in range(1_234)]
    taken, re_leased = ids[700], ids[1_100]
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await _running(
        database,
        (
            (
                execution_id,
                "runner-b" if execution_id == taken else OWNER,
                soon,
                2 if execution_id == re_leased else 1,
            )
            for execution_id in ids
        ),
    )
    leases = {i: Lease(owner=OWNER, generation=1) for i in ids}
    renewed = await ExecutionQueue(database).renew_leases(OWNER, leases, 60.0)
    assert renewed == set(ids) - {taken, re_leased}
    rows = await database.fetch(
        "SELECT id FROM runwire_execution WHERE lease_expires_at > {}",
        soon + timedelta(seconds=30),
    )
    assert {row["id"] for row in rows} == set(ids) - {taken}


async def test_a_runner_does_not_take_over_the_late_leases_it_still_holds(
    database: Database,
) -> None:
    """A lease of this runner's that expired while it still holds it (renewed late: a thousand
    claims starting one by one) is not lost: taken over, its execution would run twice. Leases
    of other runners, and of this one's that it no longer holds, are taken over."""
    expired = datetime.now(UTC) - timedelta(seconds=30)
    owners = {"mine-held": OWNER, "mine-forgotten": OWNER, "theirs": "runner-b"}
    await _running(
        database, ((execution_id, owner, expired, 1) for execution_id, owner in owners.items())
    )
    taken = await ExecutionQueue(database).take_over_expired(OWNER, 6.0, 2.0, keep={"mine-held"})
    assert sorted((execution.id, previous) for execution, previous in taken) == [
        ("mine-forgotten", OWNER),
        ("theirs", "runner-b"),
    ]
