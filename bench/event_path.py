"""P1: events persisted + delivered per second, one subscriber.

Three ways to get N output events of one execution into Postgres (and, for two of them, to a
subscriber), measured in one run against a fresh database on 127.0.0.1:

- runwire:  EventLog (batched COPY + projections in one transaction, then a bus notice)
            → Hub.deliver → one `Hub.follow` subscriber; the bus is Postgres LISTEN/NOTIFY.
- naive:    one autocommit Piccolo INSERT per event, then one publish of the JSON event through
            stock broadcaster's postgres backend to one `Broadcast.subscribe` subscriber.
- raw COPY: asyncpg `copy_records_to_table` of pre-built rows in batches of 5,000, no
            delivery: the ceiling.

Usage: .venv/bin/python bench/event_path.py [--events N | --quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
from broadcaster import Broadcast

# What Broadcast.subscribe() yields; broadcaster does not re-export the name.
from broadcaster._base import Subscriber

from runwire.db import tables
from runwire.db.engine import Database
from runwire.db.repository import Repository
from runwire.domain.clock import utc_now
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus
from runwire.events.bus import Bus
from runwire.events.hub import Hub
from runwire.events.log import EventLog

POSTGRES_SERVER: Final = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_EVENTS: Final = 50_000
QUICK_EVENTS: Final = 2_000
WARMUP_EVENTS: Final = 500
FLUSH_INTERVAL: Final = 0.002  # seconds; the server's default RUNWIRE_FLUSH_INTERVAL_MS is 2
HUB_BUFFER: Final = 256  # batches; the server's default RUNWIRE_SUBSCRIBER_BUFFER
YIELD_EVERY: Final = 100  # the producer lets the loop run once per this many appends
COPY_BATCH: Final = 5_000
EVENT_COLUMNS: Final = ("execution_id", "seq", "at", "type", "step_key", "attempt", "data")

RUNWIRE: Final = "runwire"
NAIVE: Final = "naive"
RAW_COPY: Final = "raw COPY"


class BenchmarkFailed(Exception):
    """A variant lost, duplicated or reordered events: its figure would be meaningless."""


@dataclass(frozen=True, slots=True)
class Result:
    variant: str
    events: int
    """Events that went through the timed path (runwire's seq 1 is written before the clock)."""
    seconds: float
    build_seconds: float = 0.0
    """Untimed preparation (raw COPY builds its rows before the clock)."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds


# ---- the events every variant writes ---------------------------------------------------------


def output_text(seq: int) -> str:
    """About 40 bytes, like a line of build output."""
    return f"line {seq:07d}: the quick brown fox jumps\n"


def make_event(execution_id: str, seq: int, last_seq: int) -> Event:
    """Seq 1 is QUEUED, seq `last_seq` is SUCCEEDED (terminal), everything between is output."""
    if seq == 1:
        return Event(execution_id, seq, utc_now(), EventType.EXECUTION_STATUS, {"status": "QUEUED"})
    if seq == last_seq:
        return Event(
            execution_id, seq, utc_now(), EventType.EXECUTION_STATUS, {"status": "SUCCEEDED"}
        )
    data = {"stream": "stdout", "text": output_text(seq)}
    return Event(execution_id, seq, utc_now(), EventType.OUTPUT, data, step_key="s", attempt=1)


def new_execution(execution_id: str) -> Execution:
    """A queued execution row like ExecutionService.start builds (the definition is a stub)."""
    return Execution(
        id=execution_id,
        status=ExecutionStatus.QUEUED,
        definition={"name": "bench", "steps": [{"key": "s", "kind": "shell"}]},
        inputs={},
        queued_at=utc_now(),
        last_seq=1,
    )


class SeqChecker:
    """Counts delivered events and fails on the first one out of order, missing or repeated."""

    def __init__(self, variant: str, last_seq: int) -> None:
        self.variant = variant
        self.last_seq = last_seq
        self.seen = 0

    def see(self, seq: int) -> bool:
        """Record `seq`; True once the last one has arrived."""
        if seq != self.seen + 1 or seq > self.last_seq:
            raise BenchmarkFailed(f"{self.variant}: got seq {seq} after seq {self.seen}")
        self.seen = seq
        return seq == self.last_seq


async def check_rows(conn: asyncpg.Connection, variant: str, execution_id: str, rows: int) -> None:
    """The database holds exactly seqs 1..rows for the execution, each once."""
    found = await conn.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT seq) AS distinct_seqs,"
        " min(seq) AS first, max(seq) AS last FROM runwire_event WHERE execution_id = $1",
        execution_id,
    )
    assert found is not None
    expected = (rows, rows, 1, rows)
    actual = (found["n"], found["distinct_seqs"], found["first"], found["last"])
    if actual != expected:
        raise BenchmarkFailed(
            f"{variant}: database holds (rows, distinct seqs, min, max) = {actual},"
            f" expected {expected}"
        )


# ---- 1. runwire: EventLog → Hub → follower ---------------------------------------------------


async def bench_runwire(
    database: Database, url: str, checker: asyncpg.Connection, events: int
) -> Result:
    """The real path: batched persist, then local delivery, with the Postgres bus running."""
    repository = Repository(database)
    async with (
        Bus.connect(url) as bus,
        Hub.running(repository, bus, HUB_BUFFER) as hub,
        EventLog.running(repository, bus, hub.deliver, flush_interval=FLUSH_INTERVAL) as log,
    ):
        await runwire_once(repository, hub, log, checker, WARMUP_EVENTS)
        return await runwire_once(repository, hub, log, checker, events)


async def runwire_once(
    repository: Repository, hub: Hub, log: EventLog, checker: asyncpg.Connection, events: int
) -> Result:
    execution_id = str(uuid.uuid4())
    last_seq = events + 2
    await repository.create_execution(
        new_execution(execution_id), make_event(execution_id, 1, last_seq)
    )
    live = asyncio.Event()
    follower = asyncio.create_task(runwire_follow(hub, execution_id, last_seq, live))
    try:
        # Start the clock only once the follower has read the backlog (seq 1): from here on
        # everything it receives went through the log and the hub.
        await first_of(live.wait(), follower)
        started = time.perf_counter()
        for seq in range(2, last_seq + 1):
            log.append(make_event(execution_id, seq, last_seq))
            if seq % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        finished = await follower
    finally:
        await cancelled(follower)
    await log.persisted()
    await check_rows(checker, RUNWIRE, execution_id, last_seq)
    return Result(RUNWIRE, events + 1, finished - started)


async def runwire_follow(hub: Hub, execution_id: str, last_seq: int, live: asyncio.Event) -> float:
    """Follow from seq 0 to the end; the perf_counter() at which the terminal event arrived."""
    seqs = SeqChecker(RUNWIRE, last_seq)
    arrived = 0.0
    # Ends by itself after the terminal event.
    async for batch in hub.follow(execution_id, 0, workspace=None):
        for event in batch:
            if seqs.see(event.seq):
                arrived = time.perf_counter()
                if not event.is_terminal:
                    raise BenchmarkFailed(f"{RUNWIRE}: the last seq {event.seq} is not terminal")
        live.set()
    if seqs.seen != last_seq:
        raise BenchmarkFailed(f"{RUNWIRE}: the follower ended after seq {seqs.seen} of {last_seq}")
    return arrived


# ---- 2. naive: INSERT per event + stock broadcaster publish -----------------------------------


async def bench_naive(url: str, checker: asyncpg.Connection, events: int) -> Result:
    """One pooled Piccolo INSERT and one stock-broadcaster NOTIFY per event, sequentially."""
    # Stock postgres backend: it publishes and LISTENs on one connection, so concurrent
    # publishes would fail ("another operation is in progress"); this loop publishes one at a
    # time and (un)subscribes only while nothing is being published.
    async with Broadcast(url) as broadcast:
        await naive_once(broadcast, checker, WARMUP_EVENTS)
        return await naive_once(broadcast, checker, events)


async def naive_once(broadcast: Broadcast, checker: asyncpg.Connection, events: int) -> Result:
    execution_id = str(uuid.uuid4())
    last_seq = events + 2
    execution = new_execution(execution_id)
    await tables.Execution.insert(
        tables.Execution(
            id=execution_id,
            status=execution.status.value,
            definition=dict(execution.definition),
            inputs={},
            labels=[],
            queued_at=execution.queued_at,
        )
    )
    channel = f"bench_naive_{secrets.token_hex(6)}"
    async with broadcast.subscribe(channel) as subscriber:
        consumer = asyncio.create_task(naive_consume(subscriber, last_seq))
        try:
            started = time.perf_counter()
            for seq in range(1, last_seq + 1):
                event = make_event(execution_id, seq, last_seq)
                await tables.Event.insert(
                    tables.Event(
                        execution_id=event.execution_id,
                        seq=event.seq,
                        at=event.at,
                        type=event.type.value,
                        step_key=event.step_key,
                        attempt=event.attempt,
                        data=dict(event.data),
                    )
                )
                await broadcast.publish(channel, json.dumps(event_json(event)))
            finished = await consumer
        finally:
            await cancelled(consumer)
    await check_rows(checker, NAIVE, execution_id, last_seq)
    return Result(NAIVE, last_seq, finished - started)


def event_json(event: Event) -> dict[str, Any]:
    return {
        "execution_id": event.execution_id,
        "seq": event.seq,
        "at": event.at.isoformat(),
        "type": event.type.value,
        "step_key": event.step_key,
        "attempt": event.attempt,
        "data": dict(event.data),
    }


async def naive_consume(subscriber: Subscriber, last_seq: int) -> float:
    """Decode every message; the perf_counter() at which the last one arrived."""
    seqs = SeqChecker(NAIVE, last_seq)
    while True:
        message = await subscriber.get()
        if seqs.see(json.loads(message.message)["seq"]):
            return time.perf_counter()


# ---- 3. raw COPY: the ceiling -----------------------------------------------------------------


async def bench_copy(url: str, checker: asyncpg.Connection, events: int) -> Result:
    """asyncpg COPY of the same rows in batches, each batch its own transaction; no delivery."""
    conn = await asyncpg.connect(url)
    try:
        await copy_once(conn, checker, WARMUP_EVENTS)
        return await copy_once(conn, checker, events)
    finally:
        await conn.close()


async def copy_once(conn: asyncpg.Connection, checker: asyncpg.Connection, events: int) -> Result:
    execution_id = str(uuid.uuid4())
    last_seq = events + 2
    # The rows are built before the clock: this row measures what Postgres ingests, nothing else.
    # The time to build them is kept too, for the figure of a sequential Python COPY writer.
    built = time.perf_counter()
    records = [record(make_event(execution_id, seq, last_seq)) for seq in range(1, last_seq + 1)]
    started = time.perf_counter()
    for first in range(0, last_seq, COPY_BATCH):
        batch = records[first : first + COPY_BATCH]
        await conn.copy_records_to_table("runwire_event", records=batch, columns=EVENT_COLUMNS)
    finished = time.perf_counter()
    await check_rows(checker, RAW_COPY, execution_id, last_seq)
    return Result(RAW_COPY, last_seq, finished - started, build_seconds=started - built)


def record(event: Event) -> tuple[Any, ...]:
    """The row the repository writes for an event (JSON as compact text)."""
    data = json.dumps(event.data, separators=(",", ":"))
    return (
        event.execution_id,
        event.seq,
        event.at,
        event.type.value,
        event.step_key,
        event.attempt,
        data,
    )


# ---- plumbing ---------------------------------------------------------------------------------


async def first_of(wait: Awaitable[Any], task: asyncio.Task[Any]) -> None:
    """Wait for `wait`, but re-raise at once if `task` fails first (it will not set the flag)."""
    waiter = asyncio.ensure_future(wait)
    try:
        await asyncio.wait((waiter, task), return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancelled(waiter)
    if task.done() and not waiter.done():
        task.result()  # raises the task's error
        raise BenchmarkFailed("the follower ended before reading the backlog")


async def cancelled(task: asyncio.Future[Any]) -> None:
    """Cancel `task` if still running and wait for it, so nothing outlives its variant."""
    if task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def fresh_database(server: str) -> AsyncIterator[str]:
    """Create an empty database with a random name; yield its URL; drop it afterwards."""
    name = f"runwire_bench_{secrets.token_hex(6)}"
    try:
        admin = await asyncpg.connect(f"{server}/postgres", timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise SystemExit(
            f"Postgres is unreachable at {server}: {type(exc).__name__}: {exc}"
        ) from None
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{server}/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def print_header(events: int, postgres_version: str) -> None:
    print("P1: events persisted + delivered per second, one subscriber")
    print(f"date:     {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"machine:  {os.cpu_count()} cores, {platform.platform()}")
    print(f"python:   {platform.python_version()} ({platform.python_implementation()})")
    print(f"postgres: {postgres_version} on 127.0.0.1")
    print(f"events:   {events:,} per variant (+ QUEUED and SUCCEEDED), warm-up {WARMUP_EVENTS:,}")
    print(f"command:  {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print()


def print_table(results: list[Result]) -> None:
    copy = next(r for r in results if r.variant == RAW_COPY)
    print(f"{'variant':<10} {'events':>8} {'seconds':>9} {'events/s':>10} {'x raw COPY':>11}")
    for r in results:
        print(
            f"{r.variant:<10} {r.events:>8,} {r.seconds:>9.3f} {r.rate:>10,.0f}"
            f" {r.rate / copy.rate:>11.3f}"
        )
    sequential = copy.events / (copy.build_seconds + copy.seconds)
    print()
    print(
        f"raw COPY rows were built before its clock ({copy.build_seconds:.3f} s);"
        f" building them in the loop as well gives {sequential:,.0f} events/s."
    )


async def run(events: int, server: str) -> None:
    # A hang is a failure, not a slow result: each variant gets a generous deadline.
    deadline = 60 + events / 100
    async with fresh_database(server) as url:
        checker = await asyncpg.connect(url)
        try:
            print_header(events, await checker.fetchval("SHOW server_version"))
            async with Database.open(url, migrate=True) as database:
                runwire = await bounded(
                    RUNWIRE, deadline, bench_runwire(database, url, checker, events)
                )
                naive = await bounded(NAIVE, deadline, bench_naive(url, checker, events))
            copy = await bounded(RAW_COPY, deadline, bench_copy(url, checker, events))
        finally:
            await checker.close()
    print_table([runwire, naive, copy])


async def bounded(variant: str, seconds: float, measure: Coroutine[Any, Any, Result]) -> Result:
    """The variant's result, or a failure once `seconds` pass (even if it then cannot stop)."""
    task = asyncio.create_task(measure, name=f"bench {variant}")
    done, _ = await asyncio.wait([task], timeout=seconds)
    if done:
        return task.result()
    task.cancel()
    # Its cleanup may itself hang (e.g. a writer retrying forever); leave it to asyncio.run's
    # final cancellation rather than wait here without end.
    await asyncio.wait([task], timeout=10)
    stuck = "" if task.done() else ", and it did not stop when cancelled"
    raise BenchmarkFailed(f"{variant}: no result within {seconds:.0f} s{stuck}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--events", type=int, default=DEFAULT_EVENTS, help="output events per variant"
    )
    size.add_argument(
        "--quick", action="store_true", help=f"{QUICK_EVENTS:,} events: a smoke run, not a figure"
    )
    parser.add_argument("--server", default=POSTGRES_SERVER, help="Postgres server URL, no db")
    args = parser.parse_args()
    events = QUICK_EVENTS if args.quick else args.events
    if events < 1:
        parser.error("--events must be at least 1")
    try:
        asyncio.run(run(events, args.server.rstrip("/")))
    except BenchmarkFailed as exc:
        sys.exit(f"BENCHMARK FAILED: {exc}")


if __name__ == "__main__":
    main()
