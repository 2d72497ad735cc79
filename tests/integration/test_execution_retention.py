"""Retention on a real database: which ended executions a policy deletes, and a sweep of many
old executions while new ones are written through the real write path, with no writer error."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from tests.support import postgres

from runwire.core import Core
from runwire.db.engine import Database
from runwire.domain.access import Actor, Role
from runwire.domain.executions import StartRequest
from runwire.domain.retention import RetentionPolicy, RetentionService
from runwire.retention import ExecutionRetention
from runwire.runner.steps import step_kinds
from runwire.settings import Settings

WORKSPACE = "workspace-retention"
OTHER = "workspace-other"
ADMIN = Actor(workspace_id=WORKSPACE, label="test", role=Role.ADMIN)
QUICK = json.dumps(
    {"name": "new", "steps": [{"key": "a", "kind": "sleep", "with": {"seconds": 0}}]}
)
EXECUTION_COLUMNS = (
    "id",
    "workspace_id",
    "name",
    "status",
    "queued_at",
    "started_at",
    "finished_at",
)


@contextlib.asynccontextmanager
async def running_core(backend: str, tmp_path: Path) -> AsyncIterator[tuple[Core, str]]:
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / 'retention.sqlite'}"
        else:
            url = await stack.enter_async_context(postgres.fresh_database())
        config = Settings(
            database_url=url,
            bus_url=f"memory://{uuid.uuid4().hex}",
            data_dir=tmp_path / "data",
            load_examples=False,
            poll_seconds=0.05,
            step_user="",
        )
        async with Database.open(url, migrate=True):
            pass
        yield await stack.enter_async_context(Core.running(config, step_kinds(config))), url


@pytest.fixture(params=["sqlite", "postgres"])
async def core(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Core, str]]:
    async with running_core(request.param, tmp_path) as found:
        yield found


Row = tuple[str, str, str, str, datetime, datetime, datetime]


def ended(workspace: str, status: str, finished_at: datetime, name: str = "old") -> Row:
    return (str(uuid.uuid4()), workspace, name, status, finished_at, finished_at, finished_at)


async def insert(url: str, rows: list[Row]) -> None:
    """Bulk-insert ended executions, each with one event and one step run, beside the API."""
    events = [(row[0], 1, row[6], "EXECUTION_STATUS", "{}") for row in rows]
    steps = [(row[0], "a", "sleep", 0, 1, "SUCCEEDED") for row in rows]
    step_columns = ("execution_id", "key", "kind", "position", "attempt", "status")
    event_columns = ("execution_id", "seq", "at", "type", "data")
    if url.startswith("sqlite"):

        def write() -> None:
            # Stored as Piccolo's SQLite engine stores timestamps (UTC, str()).
            def text(row: tuple[object, ...]) -> tuple[object, ...]:
                return tuple(str(v.astimezone(UTC)) if isinstance(v, datetime) else v for v in row)

            with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
                for table, columns, values in (
                    ("runwire_execution", EXECUTION_COLUMNS, rows),
                    ("runwire_event", event_columns, events),
                    ("runwire_step_run", step_columns, steps),
                ):
                    marks = ", ".join("?" for _ in columns)
                    db.executemany(
                        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                        [text(value) for value in values],
                    )
                db.commit()

        await asyncio.to_thread(write)
        return
    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table(
            "runwire_execution", records=rows, columns=EXECUTION_COLUMNS
        )
        await connection.copy_records_to_table(
            "runwire_event", records=events, columns=event_columns
        )
        await connection.copy_records_to_table(
            "runwire_step_run", records=steps, columns=step_columns
        )
    finally:
        await connection.close()


async def remaining(core: Core, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for at in range(0, len(ids), 500):
        chunk = ids[at : at + 500]
        marks = ", ".join("{}" for _ in chunk)
        rows = await core.database.fetch(
            f"SELECT id FROM runwire_execution WHERE id IN ({marks})", *chunk
        )
        found |= {row["id"] for row in rows}
    return found


async def test_a_policy_deletes_exactly_the_expired_ended_executions(
    core: tuple[Core, str],
) -> None:
    found, url = core
    now = datetime.now(UTC)
    day = timedelta(days=1)
    old_ok = ended(WORKSPACE, "SUCCEEDED", now - 10 * day)
    old_failed = ended(WORKSPACE, "FAILED", now - 10 * day)
    ancient_failed = ended(WORKSPACE, "TIMED_OUT", now - 40 * day)
    recent = [ended(WORKSPACE, "SUCCEEDED", now - day - timedelta(minutes=i)) for i in range(4)]
    elsewhere = ended(OTHER, "SUCCEEDED", now - 100 * day)
    # Paused long ago and never ended: not the sweep's to delete, whatever its age. (Paused, not
    # queued: the runner would claim a queued one.)
    paused = (str(uuid.uuid4()), WORKSPACE, "old", "PAUSED", now - 50 * day, None, None)
    await insert(url, [old_ok, old_failed, ancient_failed, *recent, elsewhere])
    await found.database.fetch(
        "INSERT INTO runwire_execution (id, workspace_id, name, status, queued_at)"
        " VALUES ({}, {}, {}, {}, {})",
        *paused[:5],
    )
    service = found.retention
    assert await service.sweep() == 0  # no policy: everything is kept

    await service.set_policy(
        ADMIN, RetentionPolicy(keep_days=7, keep_executions=3, keep_failed_days=30)
    )
    policy = await service.policy(ADMIN)
    # What the domain's arithmetic says must go, judged row by row, is what the SQL deletes.
    mine = [row for row in (old_ok, old_failed, ancient_failed, *recent)]
    by_recency = sorted(mine, key=lambda row: (row[6], row[0]), reverse=True)
    rules = policy.rules(datetime.now(UTC))
    expected_gone = {
        row[0]
        for rank, row in enumerate(by_recency)
        if rules.expires(row[3] in {"FAILED", "TIMED_OUT"}, row[6], newer_ended=rank)
    }
    assert expected_gone == {old_ok[0], ancient_failed[0], recent[3][0]}
    assert await service.sweep() == 3
    all_ids = [row[0] for row in (old_ok, old_failed, ancient_failed, *recent, elsewhere, paused)]
    # Gone: older than 7 days; the 4th newest; a failed one past 30 days. The failed one of 10
    # days is kept by keepFailedDays though beyond both other limits.
    assert await remaining(found, all_ids) == {
        old_failed[0],
        recent[0][0],
        recent[1][0],
        recent[2][0],
        elsewhere[0],
        paused[0],
    }
    assert await found.store.events.events(old_ok[0], 0) == []
    before = await remaining(found, all_ids)
    assert await service.sweep() == 0, before - await remaining(found, all_ids)  # idempotent

    stored = await service.policy(ADMIN)
    assert (stored.keep_days, stored.keep_executions, stored.keep_failed_days) == (7, 3, 30)
    assert stored.updated_by == "test"


async def test_the_background_task_sweeps_at_start(core: tuple[Core, str]) -> None:
    found, url = core
    old = ended(WORKSPACE, "CANCELLED", datetime.now(UTC) - timedelta(days=3))
    await insert(url, [old])
    await found.retention.set_policy(ADMIN, RetentionPolicy(keep_days=1))
    async with ExecutionRetention.running(found.retention, every_seconds=0.05):
        async with asyncio.timeout(10):
            while await remaining(found, [old[0]]):
                await asyncio.sleep(0.05)


async def sweep_while_writing(found: Core, url: str, count: int) -> None:
    """`count` old executions swept (by two sweepers at once) while writers start new ones."""
    long_ago = datetime.now(UTC) - timedelta(days=30)
    old = [ended(WORKSPACE, "SUCCEEDED", long_ago - timedelta(seconds=i)) for i in range(count)]
    began = time.monotonic()
    await insert(url, old)
    inserted = time.monotonic() - began
    await found.retention.set_policy(ADMIN, RetentionPolicy(keep_days=1))

    written: list[str] = []
    waits: list[float] = []
    errors: list[BaseException] = []
    sweeping = asyncio.Event()

    async def writer() -> None:
        while not sweeping.is_set():
            try:
                asked = time.monotonic()
                started = await found.executions.start(StartRequest(definition=QUICK), ADMIN)
                waits.append(time.monotonic() - asked)
                written.append(started.id)
            except Exception as error:  # every writer error is the test's failure, reported below
                errors.append(error)
            await asyncio.sleep(0.005)

    # Two sweepers, as two processes would run: they must not trip over each other.
    second = RetentionService(found.store.deletion)
    writers = [asyncio.create_task(writer()) for _ in range(4)]
    began = time.monotonic()
    try:
        deleted = await asyncio.gather(found.retention.sweep(), second.sweep())
    finally:
        sweeping.set()
        await asyncio.gather(*writers)
    swept = time.monotonic() - began
    print(
        f"inserted {count} in {inserted:.1f}s; swept in {swept:.1f}s; {len(written)} written,"
        f" slowest start {max(waits) * 1000:.0f} ms"
    )
    assert errors == []
    assert sum(deleted) == count
    assert await remaining(found, [row[0] for row in old]) == set()
    assert len(written) > 0
    assert await remaining(found, written) == set(written)


async def test_a_sweep_deletes_10k_old_executions_while_new_ones_are_written(
    core: tuple[Core, str],
) -> None:
    await sweep_while_writing(*core, count=10_000)


@pytest.mark.long
async def test_a_sweep_deletes_100k_old_executions_while_new_ones_are_written(
    tmp_path: Path,
) -> None:
    async with running_core("postgres", tmp_path) as (found, url):
        await sweep_while_writing(found, url, count=100_000)
