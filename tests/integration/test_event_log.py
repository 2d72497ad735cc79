"""The event log on Postgres: batches, order, and one execution's rejected data."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from runwire.core import Stores
from runwire.db.engine import Database
from runwire.db.events import EventRepository
from runwire.domain.clock import utc_now
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus
from runwire.events.log import MAX_BATCH_BYTES, EventLog


class Published:
    """Where the log hands what it stored: a record of it, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, events: Sequence[Event]) -> None:
        self.events.extend(events)


def _output(execution_id: str, seq: int, step_key: str = "s") -> Event:
    return Event(
        execution_id,
        seq,
        utc_now(),
        EventType.OUTPUT,
        {"stream": "stdout", "text": f"{seq}\n"},
        step_key,
        1,
    )


async def test_refused_data_is_reported_and_the_others_flow(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    published = Published()
    async with Database.open(postgres_url, migrate=True) as database:
        events = EventRepository(database)
        async with asyncio.timeout(10), EventLog.running(events, published, 0.002) as log:
            log.append(_output("good", 1))
            # Postgres refuses a step key longer than its column: this event cannot be stored.
            log.append(_output("bad", 1, step_key="k" * 101))
            log.append(_output("good", 2))
            await log.persisted()
            log.append(_output("bad", 2))  # after a refused one: refused too, or seqs would gap
            log.append(_output("good", 3))
            await log.persisted()
            # An event at the refused seq replaces it, and the execution's log goes on.
            log.append(_output("bad", 1))
            log.append(_output("bad", 2))
            await log.persisted()
        assert [e.seq for e in await events.events("good", 0)] == [1, 2, 3]
        assert [e.seq for e in published.events if e.execution_id == "good"] == [1, 2, 3]
        assert [(e.seq, e.step_key) for e in await events.events("bad", 0)] == [(1, "s"), (2, "s")]
    assert "1 events of execution bad (seq 1-1) not written: the database refused them" in (
        caplog.text
    )
    assert "refusing later events of execution bad too (from seq 2)" in caplog.text


async def test_events_keep_seq_order_across_many_batches(postgres_url: str) -> None:
    published = Published()
    async with Database.open(postgres_url, migrate=True) as database:
        events = EventRepository(database)
        async with EventLog.running(events, published, 0.001) as log:
            for seq in range(1, 12_001):
                log.append(_output("many", seq))
                if seq % 500 == 0:
                    await asyncio.sleep(0)
            await log.persisted()
        assert [e.seq for e in published.events] == list(range(1, 12_001))
        stored = await events.events("many", 0, limit=20_000)
        assert [e.seq for e in stored] == list(range(1, 12_001))


async def test_shutdown_flushes_what_was_appended(postgres_url: str) -> None:
    async with Database.open(postgres_url, migrate=True) as database:
        events = EventRepository(database)
        async with EventLog.running(events, Published(), 1.0) as log:
            for seq in range(1, 6):
                log.append(_output("late", seq))
        assert [e.seq for e in await events.events("late", 0)] == [1, 2, 3, 4, 5]


async def test_events_of_a_lease_taken_over_are_refused_and_reported(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    published = Published()
    async with Database.open(postgres_url, migrate=True) as database:
        stores = Stores.on(database)
        execution = Execution(
            id="fenced",
            status=ExecutionStatus.QUEUED,
            definition={"name": "f", "steps": []},
            inputs={},
            queued_at=utc_now(),
            workspace_id="w",
        )
        await stores.executions.create_execution(
            execution,
            Event("fenced", 1, utc_now(), EventType.EXECUTION_STATUS, {"status": "QUEUED"}),
        )
        [claimed] = await stores.queue.claim("runner-a", 1, 30)
        assert claimed.lease is not None
        async with EventLog.running(stores.events, published, 0.002) as log:
            ownership = log.own("fenced", claimed.lease)
            log.append(_output("fenced", 2))
            await log.persisted()
            # Another runner takes it over (the lease expired): a new generation.
            await database.fetch(
                "UPDATE runwire_execution SET owner = 'runner-b',"
                " lease_generation = lease_generation + 1 WHERE id = 'fenced'"
            )
            log.append(_output("fenced", 3))
            log.append(_output("fenced", 4))
            await log.persisted()
            assert ownership.lost.is_set()
            assert ownership.lease_lost
            assert ownership.first_refused == 3
        assert [e.seq for e in await stores.events.events("fenced", 0)] == [1, 2]
        assert [e.seq for e in published.events] == [2]
    assert "2 events of execution fenced (seq 3-4) not written: its lease is held by another" in (
        caplog.text
    )


class Publishes:
    """Each publish call's events: one per stored batch."""

    def __init__(self) -> None:
        self.calls: list[list[Event]] = []

    async def publish(self, events: Sequence[Event]) -> None:
        self.calls.append(list(events))


async def test_a_flooding_execution_shares_each_batch_and_is_held_back_by_bytes(
    postgres_url: str,
) -> None:
    published = Publishes()
    chunk = "x" * (32 * 1024 - 1) + "\n"

    def flood(seq: int) -> Event:
        data = {"stream": "stdout", "text": chunk}
        return Event("flood", seq, utc_now(), EventType.OUTPUT, data, "s", 1)

    async with Database.open(postgres_url, migrate=True) as database:
        events = EventRepository(database)
        async with asyncio.timeout(30), EventLog.running(events, published, 0.002) as log:
            for seq in range(1, 301):  # 9.4 MiB in 300 events: far under the count limit
                log.append(flood(seq))
            assert log.backlogged("flood")  # by bytes: its producer would wait now
            assert not log.backlogged("quiet")
            for seq in range(1, 51):
                log.append(_output("quiet", seq))
            await log.persisted()
            assert not log.backlogged("flood")
    # The quiet execution's events went out with the first batch, not behind 9 MiB of output
    # (nor one per batch, which a steady trickle would outrun).
    assert [e.execution_id for e in published.calls[0]].count("quiet") == 50
    for call in published.calls:
        text = sum(len(e.data["text"]) for e in call if e.execution_id == "flood")
        assert text <= MAX_BATCH_BYTES + len(chunk)
    flooded = [e.seq for call in published.calls for e in call if e.execution_id == "flood"]
    assert flooded == list(range(1, 301))
