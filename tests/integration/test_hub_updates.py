"""The hub's live list on Postgres: status updates across processes, filters, slow watchers, resync.

Each "process" here is a bus connection, a hub, a publisher and an event log of its own, as in a
server; they share one Postgres database and one bus namespace (Postgres LISTEN/NOTIFY or Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from redis import asyncio as aioredis
from tests.support.postgres import redis_url

from runwire.core import Stores
from runwire.db.engine import Database
from runwire.domain.clock import utc_now
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus
from runwire.domain.queries import ExecutionFilter
from runwire.events.bus import Bus
from runwire.events.hub import ExecutionUpdate, Hub, UpdateKind
from runwire.events.log import EventLog
from runwire.events.publisher import Publisher

# Every row these tests write belongs to one workspace.
WORKSPACE = "workspace-a"

QUEUED, RUNNING, SUCCEEDED, FAILED = (
    ExecutionStatus.QUEUED,
    ExecutionStatus.RUNNING,
    ExecutionStatus.SUCCEEDED,
    ExecutionStatus.FAILED,
)


class Process:
    """One process's hub, publisher and event log, and the seqs it has assigned per execution."""

    def __init__(self, stores: Stores, hub: Hub, publisher: Publisher, log: EventLog) -> None:
        self.stores = stores
        self.hub = hub
        self.publisher = publisher
        self.log = log
        self._seqs: dict[str, int] = {}

    async def queue(self, *, labels: tuple[str, ...] = (), scenario: str | None = None) -> str:
        """A new QUEUED execution, announced like a start is."""
        now = utc_now()
        execution = Execution(
            workspace_id=WORKSPACE,
            id=str(uuid.uuid4()),
            status=QUEUED,
            definition={"name": "hub-test", "steps": []},
            inputs={},
            queued_at=now,
            scenario_name=scenario,
            scenario_version=None if scenario is None else 1,
            labels=labels,
            last_seq=1,
        )
        first = Event(execution.id, 1, now, EventType.EXECUTION_STATUS, {"status": QUEUED})
        await self.stores.executions.create_execution(execution, first)
        self._seqs[execution.id] = 1
        await self.publisher.publish([first])
        return execution.id

    def status(self, execution_id: str, status: ExecutionStatus, **data: Any) -> None:
        self._event(execution_id, EventType.EXECUTION_STATUS, {"status": status, **data})

    def output(self, execution_id: str, text: str) -> None:
        self._event(execution_id, EventType.OUTPUT, {"stream": "stdout", "text": text})

    def usage(self, execution_id: str, tokens_input: int, cost_usd: float | None) -> None:
        """A USAGE event as the runner writes it (only what the projection sums)."""
        data = {"tokens_input": tokens_input, "tokens_output": 1, "cost_usd": cost_usd}
        self._event(execution_id, EventType.USAGE, data)

    def _event(self, execution_id: str, kind: EventType, data: dict[str, Any]) -> None:
        seq = self._seqs[execution_id] = self._seqs[execution_id] + 1
        step = ("s", 1) if kind in (EventType.OUTPUT, EventType.USAGE) else (None, None)
        self.log.append(Event(execution_id, seq, utc_now(), kind, data, *step))


@pytest.fixture(params=["postgres", "redis"])
async def bus_url(request: pytest.FixtureRequest, postgres_url: str) -> str:
    return postgres_url if request.param == "postgres" else await redis_url()


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[Stores]:
    async with Database.open(postgres_url, migrate=True) as database:
        yield Stores.on(database)


@contextlib.asynccontextmanager
async def process(
    stores: Stores, url: str, namespace: str, buffer: int = 64
) -> AsyncIterator[Process]:
    async with (
        Bus.connect(url, namespace) as bus,
        Hub.running(stores.executions, stores.events, stores.history, bus, buffer) as hub,
    ):
        publisher = Publisher(hub, bus)
        async with EventLog.running(stores.events, publisher, 0.002) as log:
            yield Process(stores, hub, publisher, log)


@pytest.fixture
def namespace() -> str:
    # Random per test: the Redis server is shared with parallel runs.
    return f"runwire-test-{secrets.token_hex(6)}"


async def until(
    updates: AsyncIterator[ExecutionUpdate], done: Any, limit: int = 1000
) -> list[tuple[str, ExecutionStatus, UpdateKind]]:
    """Updates as (id, status, kind) up to and including the first for which done(update)."""
    seen: list[tuple[str, ExecutionStatus, UpdateKind]] = []
    while len(seen) < limit:
        update = await anext(updates)
        seen.append((update.execution.id, update.status, update.kind))
        if done(update):
            return seen
    raise AssertionError(f"no end after {limit} updates: {seen}")


def is_(execution_id: str, status: ExecutionStatus) -> Any:
    return lambda u: u.execution.id == execution_id and u.status is status


@contextlib.asynccontextmanager
async def watching(
    hub: Hub, where: ExecutionFilter
) -> AsyncIterator[AsyncIterator[ExecutionUpdate]]:
    """hub.watch, subscribed on entry (a generator's body runs only once it is iterated)."""
    before = hub.watcher_count
    updates = hub.watch(where)
    first = asyncio.ensure_future(anext(updates))
    while hub.watcher_count == before:
        await asyncio.sleep(0)

    async def all_updates() -> AsyncIterator[ExecutionUpdate]:
        yield await first
        async for update in updates:
            yield update

    try:
        yield all_updates()
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await updates.aclose()


def all_of(*wanted: Any) -> Any:
    """A `done` for `until`: true once each of `wanted` has matched an update, in any order."""
    left = list(wanted)

    def done(update: ExecutionUpdate) -> bool:
        left[:] = [each for each in left if not each(update)]
        return not left

    return done


def by_execution(
    seen: list[tuple[str, ExecutionStatus, UpdateKind]],
) -> dict[str, list[ExecutionStatus]]:
    """Each execution's statuses in the order they came (order across executions is free)."""
    found: dict[str, list[ExecutionStatus]] = {}
    for execution_id, status, _ in seen:
        found.setdefault(execution_id, []).append(status)
    return found


async def test_changes_reach_watchers_in_every_process_once(
    stores: Stores, bus_url: str, namespace: str
) -> None:
    everything, labelled, running_only = (
        ExecutionFilter(workspace=WORKSPACE),
        ExecutionFilter(workspace=WORKSPACE, label="blue"),
        ExecutionFilter(workspace=WORKSPACE, statuses=(RUNNING,)),
    )
    async with (
        asyncio.timeout(20),
        process(stores, bus_url, namespace) as writer,
        process(stores, bus_url, namespace) as reader,
        watching(writer.hub, everything) as local,
        watching(reader.hub, everything) as remote,
        watching(reader.hub, labelled) as blue_only,
        watching(reader.hub, running_only) as running,
    ):
        blue = await writer.queue(labels=("blue",))
        red = await writer.queue(labels=("red",))
        writer.status(blue, RUNNING)
        writer.output(blue, "hello\n")
        await writer.log.persisted()
        writer.status(red, RUNNING)
        writer.status(red, FAILED, error="boom")  # one batch: two changes, one notice
        writer.output(blue, "bye\n")
        writer.status(blue, SUCCEEDED)
        await writer.log.persisted()
        # Sentinels from each side in turn: the bus delivers in publish order, so a second
        # update caused by any notice above (this process's own, coming back) would arrive
        # before the sentinel that comes over the bus. Each hub gets its own process's sentinel
        # at once (local followers first) and the other's over the bus, in either order: each
        # watcher reads until it has seen both.
        from_reader = await reader.queue()
        from_writer = await writer.queue()

        expected = {
            blue: [QUEUED, RUNNING, SUCCEEDED],
            red: [QUEUED, RUNNING, FAILED],
            from_reader: [QUEUED],
            from_writer: [QUEUED],
        }
        for updates in (local, remote):
            seen = await until(updates, all_of(is_(from_reader, QUEUED), is_(from_writer, QUEUED)))
            assert by_execution(seen) == expected
            assert {kind for _, _, kind in seen} == {UpdateKind.CHANGED}

        # The label filter: only blue's changes.
        seen = await until(blue_only, is_(blue, SUCCEEDED))
        assert by_execution(seen) == {blue: [QUEUED, RUNNING, SUCCEEDED]}

        # The status filter: entering RUNNING, and the change that leaves it.
        seen = await until(running, is_(blue, SUCCEEDED))
        if (red, FAILED, UpdateKind.CHANGED) not in seen:  # it may come after blue's
            seen += await until(running, is_(red, FAILED))
        assert by_execution(seen) == {blue: [RUNNING, SUCCEEDED], red: [RUNNING, FAILED]}
        reader.status(from_reader, RUNNING)
        assert await until(running, lambda u: True) == [(from_reader, RUNNING, UpdateKind.CHANGED)]


async def test_usage_changes_reach_watchers_in_every_process_coalesced(
    stores: Stores, bus_url: str, namespace: str
) -> None:
    async with (
        asyncio.timeout(20),
        process(stores, bus_url, namespace) as writer,
        process(stores, bus_url, namespace) as reader,
        watching(writer.hub, ExecutionFilter(workspace=WORKSPACE)) as local,
        watching(reader.hub, ExecutionFilter(workspace=WORKSPACE, statuses=(RUNNING,))) as remote,
    ):
        execution_id = await writer.queue()
        writer.status(execution_id, RUNNING)
        await writer.log.persisted()
        for _ in range(50):
            writer.usage(execution_id, 10, 0.001)
        await writer.log.persisted()

        for updates in (local, remote):
            spent: list[ExecutionUpdate] = []
            while not spent or spent[-1].execution.usage.calls < 50:
                update = await anext(updates)
                if update.execution.usage.calls:
                    spent.append(update)
            # 50 reports are one or two usage updates (by the interval), not 50; each a CHANGED
            # update with the status the execution already had.
            assert 1 <= len(spent) <= 2
            assert {(u.kind, u.status) for u in spent} == {(UpdateKind.CHANGED, RUNNING)}
            usage = spent[-1].execution.usage
            assert (usage.input, usage.output, usage.unpriced) == (500, 50, 0)
            assert usage.cost_known == pytest.approx(0.05)

        # One report without a price: the stored total's cost is unknown from then on.
        writer.usage(execution_id, 10, None)
        writer.status(execution_id, SUCCEEDED)
        # The report may come first as a usage update of its own (still RUNNING), then the end.
        update = await anext(remote)
        while update.status is RUNNING and update.kind is UpdateKind.CHANGED:
            update = await anext(remote)
        assert update.status is SUCCEEDED  # leaving the RUNNING filter
        assert update.execution.usage.calls == 51
        assert update.execution.usage.cost_known is None


async def test_update_carries_the_stored_execution(
    stores: Stores, bus_url: str, namespace: str
) -> None:
    async with (
        asyncio.timeout(20),
        process(stores, bus_url, namespace) as writer,
        process(stores, bus_url, namespace) as reader,
        watching(reader.hub, ExecutionFilter(workspace=WORKSPACE, statuses=(FAILED,))) as failures,
    ):
        execution_id = await writer.queue(scenario="checkout")
        writer.status(execution_id, RUNNING)
        writer.status(execution_id, FAILED, error="step ping failed", duration_ms=1234)
        update = await anext(failures)
    assert update.status is FAILED
    assert update.kind is UpdateKind.CHANGED
    assert update.execution.id == execution_id
    assert update.execution.status is FAILED
    assert update.execution.error == "step ping failed"
    assert update.execution.duration_ms == 1234
    assert update.execution.scenario_name == "checkout"


async def test_a_slow_watcher_gets_the_latest_of_each_execution(
    stores: Stores, namespace: str
) -> None:
    async with (
        asyncio.timeout(20),
        process(stores, "memory://", namespace, buffer=4) as writer,
        watching(writer.hub, ExecutionFilter(workspace=WORKSPACE)) as fast,
        watching(writer.hub, ExecutionFilter(workspace=WORKSPACE)) as slow,
    ):
        ids = [await writer.queue() for _ in range(3)]
        await anext(slow)  # its first update; it reads no more until the end
        for _ in range(5):  # many changes of few executions
            for execution_id in ids:
                writer.status(execution_id, RUNNING)
            await writer.log.persisted()
        for execution_id in ids:
            writer.status(execution_id, SUCCEEDED)
        await writer.log.persisted()
        await until(fast, is_(ids[-1], SUCCEEDED))  # so slow has been offered everything
        buffered = [len(w.updates) for w in writer.hub._watchers]  # white box: bounded
        slow_seen = await until(slow, is_(ids[-1], SUCCEEDED))
    assert max(buffered) <= 4
    # 20 changes after its first update; it kept no more than its buffer holds.
    assert len(slow_seen) <= 4
    # Coalesced: the latest update of each execution was kept, in order.
    assert slow_seen[-3:] == [(i, SUCCEEDED, UpdateKind.CHANGED) for i in ids]


async def test_a_watcher_too_far_behind_is_restated_from_the_database(
    stores: Stores, namespace: str
) -> None:
    async with (
        asyncio.timeout(20),
        process(stores, "memory://", namespace, buffer=4) as writer,
        watching(writer.hub, ExecutionFilter(workspace=WORKSPACE)) as slow,
    ):
        early = await writer.queue()
        await anext(slow)
        # More different executions change than the slow watcher's buffer holds.
        ids = [await writer.queue() for _ in range(10)]
        for execution_id in ids:
            writer.status(execution_id, RUNNING)
        await writer.log.persisted()
        final = {early: QUEUED, **dict.fromkeys(ids, RUNNING)}
        state: dict[str, ExecutionStatus] = {}
        kinds: list[UpdateKind] = []
        while state != final:
            update = await anext(slow)
            state[update.execution.id] = update.status
            kinds.append(update.kind)
    # Updates were dropped and the executions restated from the database instead; the loop
    # above ended, so every execution's latest status arrived.
    assert UpdateKind.CURRENT in kinds


async def kill_listener_connections(url: str) -> None:
    """Cut the LISTEN connections on this test's database, or every Redis pubsub client."""
    if url.startswith("redis"):
        client = aioredis.Redis.from_url(url)
        try:
            assert await client.client_kill_filter(_type="pubsub") >= 1
        finally:
            await client.aclose()
        return
    conn = await asyncpg.connect(url)
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND query LIKE 'LISTEN%'",
            url.rsplit("/", 1)[1],
        )
        assert killed >= 1
    finally:
        await conn.close()


async def test_a_bus_resync_restates_live_executions(
    stores: Stores, bus_url: str, namespace: str
) -> None:
    async with (
        asyncio.timeout(20),
        process(stores, bus_url, namespace) as writer,
        process(stores, bus_url, namespace) as reader,
        watching(reader.hub, ExecutionFilter(workspace=WORKSPACE)) as updates,
    ):
        running = await writer.queue()
        writer.status(running, RUNNING)
        await until(updates, is_(running, RUNNING))
        await kill_listener_connections(bus_url)
        seen = await until(updates, lambda u: u.kind is UpdateKind.CURRENT)
    assert seen[-1] == (running, RUNNING, UpdateKind.CURRENT)
