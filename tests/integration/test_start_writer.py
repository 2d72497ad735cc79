"""Group commit of starts on a real Postgres: one statement per batch, each caller answered.

Postgres only: SQLite writes one start per transaction (the store contract covers that path).
The faults are real: a trigger holds the batch's statement inside Postgres, and the test kills
the backend running it, as a crash or a cut connection would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import asyncpg
import pytest
from tests.support import postgres

from runwire.db.engine import Database
from runwire.db.executions import ExecutionRepository
from runwire.domain.clock import utc_now
from runwire.domain.models import Activity, Event, EventType, Execution, ExecutionStatus
from runwire.faults import is_outage

WORKSPACE = "w-starts"
CHANNEL = "runwire.test-starts"


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with postgres.fresh_database() as found:
        yield found


@contextlib.asynccontextmanager
async def repository(url: str) -> AsyncIterator[ExecutionRepository]:
    async with Database.open(url) as database:
        executions = ExecutionRepository(database)
        # Each batch announces its executions on CHANNEL, as core.py wires the bus's notices.
        executions.announce_starts(
            lambda events: [(CHANNEL, ",".join(sorted(e.execution_id for e in events)))]
        )
        async with executions.running():
            yield executions


def start(execution_id: str, action: str = "startExecution") -> tuple[Execution, Event, Activity]:
    now = utc_now()
    execution = Execution(
        id=execution_id,
        workspace_id=WORKSPACE,
        status=ExecutionStatus.QUEUED,
        definition={"name": "t", "steps": [{"key": "s", "kind": "shell"}]},
        inputs={},
        queued_at=now,
        labels=("batch", execution_id),
        last_seq=1,
        triggered_by="token:test",
    )
    event = Event(execution_id, 1, now, EventType.EXECUTION_STATUS, {"status": "QUEUED"})
    activity = Activity(
        action=action,
        actor="token:test",
        execution_id=execution_id,
        at=now,
        detail={},
        result="StartExecutionSuccess",
        workspace_id=WORKSPACE,
    )
    return execution, event, activity


async def create(
    executions: ExecutionRepository, execution_id: str, action: str = "startExecution"
) -> None:
    execution, event, activity = start(execution_id, action)
    assert await executions.create_execution(execution, event, None, activity) == (execution, True)


async def stored(url: str, ids: Sequence[str]) -> dict[str, int]:
    """Per table, the rows of `ids` it holds."""
    conn = await asyncpg.connect(url)
    try:
        counts: dict[str, int] = {}
        for table, column in (
            ("runwire_execution", "id"),
            ("runwire_execution_label", "execution_id"),
            ("runwire_event", "execution_id"),
            ("runwire_activity", "execution_id"),
        ):
            counts[table] = await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE {column} = ANY($1::varchar[])", list(ids)
            )
        return counts
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def listening(url: str) -> AsyncIterator[asyncio.Queue[str]]:
    conn = await asyncpg.connect(url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await conn.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[3]))
    try:
        yield heard
    finally:
        await conn.close()


async def test_concurrent_starts_are_one_transaction_with_labels_events_audit_and_notice(
    url: str,
) -> None:
    ids = [f"e-{i:02d}" for i in range(20)]
    async with listening(url) as heard, repository(url) as executions:
        await asyncio.gather(*(create(executions, i) for i in ids))

        counts = await stored(url, ids)
        assert counts == {
            "runwire_execution": 20,
            "runwire_execution_label": 40,
            "runwire_event": 20,
            "runwire_activity": 20,
        }
        conn = await asyncpg.connect(url)
        try:
            transactions = await conn.fetchval(
                "SELECT count(DISTINCT xmin::text) FROM runwire_execution WHERE id = ANY($1)", ids
            )
        finally:
            await conn.close()
        assert transactions == 1  # started in one turn of the loop: one batch, one commit
        assert await asyncio.wait_for(heard.get(), 30) == ",".join(ids)
        read = await executions.execution("e-07", workspace=WORKSPACE)
        assert read is not None
        assert read.labels == ("batch", "e-07")


async def test_a_refused_start_fails_alone_and_its_batch_neighbours_are_stored(url: str) -> None:
    async with repository(url) as executions:
        await create(executions, "e-taken")
        ids = ["e-a", "e-taken", "e-b"]  # e-taken's id is in use: the database refuses it
        results = await asyncio.gather(
            *(create(executions, i) for i in ids), return_exceptions=True
        )

    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], asyncpg.UniqueViolationError)
    assert (await stored(url, ["e-a", "e-b"]))["runwire_execution"] == 2
    assert (await stored(url, ["e-taken"]))["runwire_activity"] == 1  # the first one's only


async def test_a_batch_cut_off_mid_statement_fails_every_caller_and_loses_no_accepted_start(
    url: str,
) -> None:
    admin = await asyncpg.connect(url)
    try:
        # A start whose audit action is "slow" holds its batch's statement inside Postgres.
        await admin.execute(
            "CREATE FUNCTION hold_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.action = 'slow' THEN PERFORM pg_sleep(120); END IF; RETURN NEW; END $$;"
            " CREATE TRIGGER hold_slow BEFORE INSERT ON runwire_activity"
            " FOR EACH ROW EXECUTE FUNCTION hold_slow()"
        )
        first = [f"cut-{i:02d}" for i in range(10)]
        second = [f"after-{i:02d}" for i in range(10)]
        async with listening(url) as heard, repository(url) as executions:
            cut = asyncio.gather(
                create(executions, first[0], action="slow"),
                *(create(executions, i) for i in first[1:]),
                return_exceptions=True,
            )
            await until_held(admin)
            # Accepted while the first batch is held: these wait for the next batch.
            after = asyncio.gather(*(create(executions, i) for i in second), return_exceptions=True)
            await asyncio.sleep(0)  # let them queue behind the held batch
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event = 'PgSleep'"
            )
            assert killed == 1

            cut_results = await cut
            after_results = await after
            notice = await asyncio.wait_for(heard.get(), 30)

        assert all(isinstance(r, Exception) and is_outage(r) for r in cut_results), cut_results
        assert after_results == [None] * len(second)
        # Nothing of the cut batch is stored (or announced); every accepted start is.
        assert await stored(url, first) == dict.fromkeys(
            ("runwire_execution", "runwire_execution_label", "runwire_event", "runwire_activity"),
            0,
        )
        assert (await stored(url, second))["runwire_execution"] == len(second)
        assert notice == ",".join(second)
        assert heard.empty()
    finally:
        await admin.close()


async def until_held(admin: asyncpg.Connection) -> None:
    """Wait (bounded) until a batch's statement is sleeping in the trigger."""
    async with asyncio.timeout(60):
        while not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event = 'PgSleep'"
        ):
            await asyncio.sleep(0.01)


async def test_an_idempotent_start_writes_its_audit_and_notice_in_its_own_transaction(
    url: str,
) -> None:
    async with listening(url) as heard, repository(url) as executions:
        execution, event, activity = start("e-key")
        keyed = replace(execution, idempotency_key="deploy-1")
        assert await executions.create_execution(keyed, event, "f", activity) == (keyed, True)
        again, event_again, activity_again = start("e-key-again")
        repeated = replace(again, idempotency_key="deploy-1")
        earlier, created = await executions.create_execution(
            repeated, event_again, "f", activity_again
        )
        assert (earlier.id, created) == ("e-key", False)
        assert await asyncio.wait_for(heard.get(), 30) == "e-key"

    assert (await stored(url, ["e-key"]))["runwire_activity"] == 1
    assert await stored(url, ["e-key-again"]) == dict.fromkeys(
        ("runwire_execution", "runwire_execution_label", "runwire_event", "runwire_activity"), 0
    )
    assert heard.empty()
