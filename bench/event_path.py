"""P1: events persisted + delivered per second, one subscriber, chunk-heavy execution.

A real `runwire serve` (Postgres database; Postgres LISTEN/NOTIFY bus, or Redis with --bus redis)
runs one execution whose single shell step writes N output lines of 40 bytes as fast as it can,
each with its own write(2). RUNWIRE_OUTPUT_COALESCE_MS=0, so what the server reads from the pipe
in one pass of its event loop becomes one OutputChunk event: the figure is the event path
(persist, publish, deliver), not the coalescer.
One graphql-transport-ws subscriber in its own process follows the execution from `afterSeq: 0`.

Baselines, measured in the same run on the exact event rows that execution produced (read back
from the server's database), each in its own processes:

- naive:    one autocommit Piccolo INSERT per event, then one publish of the JSON event through
            stock broadcaster on the same bus, received by one `Broadcast.subscribe` subscriber
            in another process.
- raw COPY: asyncpg `copy_records_to_table` of the rows in batches of 5,000 into a fresh table
            of the same shape, rows built before the clock, no delivery: the ceiling.

Every event must arrive exactly once, in order; anything else fails loudly.

Usage: .venv/bin/python bench/event_path.py [--lines N | --quick] [--bus postgres|redis]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.synchronize
import os
import platform
import queue
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, Final

import asyncpg
import websockets
from websockets.asyncio.client import connect

# Run from the repository root or from bench/: the test support package lives at the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    FINISHED,
    START,
    BenchmarkFailed,
    graphql,
    postgres_version,
)
from tests.support import postgres
from tests.support.server import Server, running_server

DEFAULT_LINES: Final = 200_000
QUICK_LINES: Final = 2_000
LINE_BYTES: Final = 40  # like a line of build output, newline included
COPY_BATCH: Final = 5_000
WARMUP_ROWS: Final = 500  # each baseline first writes this many rows untimed (connection setup)
NOTIFY_LIMIT: Final = 7_999  # bytes; Postgres rejects a longer NOTIFY payload
EVENT_COLUMNS: Final = ("execution_id", "seq", "at", "type", "step_key", "attempt", "data")
COPY_TABLE: Final = "bench_event_copy"
# The line-rate budget (5,000 lines/s after a burst of 50,000) would drop most of the 200,000
# unpaced lines: P1 measures the event path, so it is off here.
SETTINGS: Final = {"RUNWIRE_OUTPUT_COALESCE_MS": "0", "RUNWIRE_OUTPUT_LINES_PER_SECOND": "0"}

RUNWIRE: Final = "runwire"
NAIVE: Final = "naive"
COPY_REPEATS: Final = 3
NAIVE_EVENTS: Final = 5_000
"""Naive writes this many of the execution's rows (seq 1..): enough for its rate at ~1k/s."""
RAW_COPY: Final = "raw COPY"
PROTOCOL: Final = "graphql-transport-ws"
SUBSCRIPTION: Final = """
subscription Follow($id: ID!) {
  executionEvents(executionId: $id, afterSeq: 0) {
    lastSeq
    events { seq at type ... on OutputChunk { text } }
  }
}
"""


@dataclass(frozen=True, slots=True)
class Result:
    variant: str
    events: int
    seconds: float
    lines: int
    build_seconds: float = 0.0
    """Untimed preparation (raw COPY builds its rows before the clock)."""
    references: int = 0
    """Naive: events too large for a NOTIFY, published as a reference to their row."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def lines_rate(self) -> float:
        return self.lines / self.seconds


@dataclass(frozen=True, slots=True)
class RunwireRun:
    """What the subscriber saw of the execution, and where it lives."""

    result: Result
    execution_id: str
    last_seq: int
    output_events: int
    largest_chunk: int
    messages: int
    """`next` messages received after go (the server batches events into messages)."""


# ---- the runwire subscriber: plain websockets speaking graphql-transport-ws ------------------


def subscriber_process(
    url: str,
    token: str,
    execution_id: str,
    ready: multiprocessing.synchronize.Event,
    go: Synchronized[float],
    reports: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """Follow one execution to `complete`; report what arrived (or why it failed)."""
    try:
        report = asyncio.run(follow(url, token, execution_id, ready, go))
    except BaseException as exc:  # the parent must hear of every failure, not wait for a report
        report = {"failure": f"subscriber: {type(exc).__name__}: {exc}"}
    reports.put(report)


async def follow(
    url: str,
    token: str,
    execution_id: str,
    ready: multiprocessing.synchronize.Event,
    go: Synchronized[float],
) -> dict[str, Any]:
    """Check seqs 1..last arrive once each, in order; count what was stamped at or after go."""
    expected = 1
    events = output_events = lines = largest = messages = 0
    last_receipt = 0.0
    # No compression on either side: the benchmark measures the event path, not zlib.
    async with connect(
        url,
        subprotocols=[websockets.Subprotocol(PROTOCOL)],
        compression=None,
        max_size=64 * 1024 * 1024,
        ping_interval=None,
        open_timeout=60,
    ) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        acknowledged = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if acknowledged.get("type") != "connection_ack":
            return {"failure": f"connection_init answered with {acknowledged}"}
        subscribe = {"query": SUBSCRIPTION, "variables": {"id": execution_id}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        async for raw in ws:
            received = time.time()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
                continue
            if kind == "complete":
                return {
                    "last_seq": expected - 1,
                    "events": events,
                    "output_events": output_events,
                    "lines": lines,
                    "largest_chunk": largest,
                    "messages": messages,
                    "last_receipt": last_receipt,
                }
            if kind != "next" or message["payload"].get("errors"):
                return {"failure": f"unexpected message {str(message)[:300]}"}
            started = go.value
            if started:
                messages += 1
            for event in message["payload"]["data"]["executionEvents"]["events"]:
                if event["seq"] != expected:
                    return {"failure": f"got seq {event['seq']}, expected {expected}"}
                expected += 1
                # Events stamped before go are the backlog read at subscription: not counted.
                if started and datetime.fromisoformat(event["at"]).timestamp() >= started:
                    events += 1
                    if event["type"] == "OUTPUT":
                        output_events += 1
                        lines += event["text"].count("\n")
                        largest = max(largest, len(event["text"]))
            # Set after the first message (the backlog), so go never precedes the subscription.
            ready.set()
            last_receipt = received
    return {"failure": f"socket closed before complete ({ws.close_code})"}


# ---- runwire: a real server, one chunk-heavy execution --------------------------------------


def chunky_definition(lines: int, go_file: Path) -> str:
    """One shell step: wait for the go file, then write `lines` lines, one write(2) each."""
    code = (
        "import os, time\n"
        "deadline = time.monotonic() + 300\n"
        f"while not os.path.exists({str(go_file)!r}):\n"
        "    if time.monotonic() > deadline: raise SystemExit(3)\n"
        "    time.sleep(0.002)\n"
        f"pad = b'x' * {LINE_BYTES - 16}\n"
        f"for i in range({lines}):\n"
        "    os.write(1, b'chunk-%08d %s\\n' % (i, pad))\n"
    )
    step = {"key": "chunks", "kind": "shell", "with": {"argv": [sys.executable, "-c", code]}}
    return json.dumps({"name": "bench-event-path", "steps": [step]})


def bench_runwire(server: Server, lines: int, directory: Path) -> RunwireRun:
    """Start the execution, subscribe from another process, create the go file, collect."""
    go_file = directory / f"go-{uuid.uuid4().hex}"
    started = graphql(server, START, {"definition": chunky_definition(lines, go_file)})
    result = started["startExecution"]
    if result["__typename"] != "StartExecutionSuccess":
        raise BenchmarkFailed(f"startExecution: {result}")
    execution_id = str(result["execution"]["id"])
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    go = context.Value("d", 0.0)
    reports: multiprocessing.Queue[dict[str, Any]] = context.Queue()
    try:
        with spawned(
            subscriber_process,
            (server.graphql_ws, server.token, execution_id, ready, go, reports),
        ):
            if not ready.wait(60):
                raise BenchmarkFailed(f"{RUNWIRE}: no first message within 60 s{failure(reports)}")
            go.value = time.time()
            go_file.touch()
            report = collected(RUNWIRE, reports, 60 + lines / 1_000)
    finally:
        go_file.touch()  # never leave the step waiting
    finished = graphql(server, FINISHED, {"id": execution_id})["execution"]
    if finished["status"] != "SUCCEEDED" or finished["lastSeq"] != report["last_seq"]:
        raise BenchmarkFailed(
            f"{RUNWIRE}: the subscriber ended at seq {report['last_seq']};"
            f" the execution is {finished['status']} at lastSeq {finished['lastSeq']}"
        )
    if report["lines"] != lines:
        raise BenchmarkFailed(f"{RUNWIRE}: {report['lines']} of {lines} lines arrived")
    return RunwireRun(
        result=Result(RUNWIRE, report["events"], report["last_receipt"] - go.value, lines),
        execution_id=execution_id,
        last_seq=report["last_seq"],
        output_events=report["output_events"],
        largest_chunk=report["largest_chunk"],
        messages=report["messages"],
    )


# ---- the rows every baseline writes -------------------------------------------------------------


async def read_rows(conn: asyncpg.Connection, execution_id: str) -> list[tuple[Any, ...]]:
    """The execution's event rows as the server wrote them (JSON data as text), by seq."""
    rows = await conn.fetch(
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM runwire_event"
        " WHERE execution_id = $1 ORDER BY seq",
        execution_id,
    )
    return [tuple(row) for row in rows]


async def check_rows(
    conn: asyncpg.Connection, variant: str, table: str, execution_id: str, rows: int
) -> None:
    """`table` holds exactly seqs 1..rows for the execution, each once."""
    found = await conn.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT seq) AS distinct_seqs,"
        f" min(seq) AS first, max(seq) AS last FROM {table} WHERE execution_id = $1",
        execution_id,
    )
    assert found is not None
    expected = (rows, rows, 1, rows)
    actual = (found["n"], found["distinct_seqs"], found["first"], found["last"])
    if actual != expected:
        raise BenchmarkFailed(
            f"{variant}: {table} holds (rows, distinct seqs, min, max) = {actual},"
            f" expected {expected}"
        )


# ---- raw COPY: the ceiling ----------------------------------------------------------------------


def copy_process(
    database_url: str, execution_id: str, reports: multiprocessing.Queue[dict[str, Any]]
) -> None:
    try:
        reports.put(asyncio.run(copy_rows(database_url, execution_id)))
    except BaseException as exc:
        reports.put({"failure": f"{RAW_COPY}: {type(exc).__name__}: {exc}"})


async def copy_rows(database_url: str, execution_id: str) -> dict[str, Any]:
    """COPY the execution's rows into a fresh table like runwire_event, 5,000 per transaction."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await read_rows(conn, execution_id)
        # The writer's view of the events: data as objects, serialized by the timed build below.
        events = [(*row[:6], json.loads(row[6])) for row in rows]
        for table in (COPY_TABLE, f"{COPY_TABLE}_warmup"):
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.execute(f"CREATE TABLE {table} (LIKE runwire_event INCLUDING ALL)")
        warmup = rows[:WARMUP_ROWS]
        await conn.copy_records_to_table(
            f"{COPY_TABLE}_warmup", records=warmup, columns=EVENT_COLUMNS
        )
        # The rows are built before the clock: the figure is what Postgres ingests. The build is
        # timed too, for the rate of a sequential Python writer that serializes and COPYs.
        built = time.perf_counter()
        records = [(*event[:6], json.dumps(event[6], separators=(",", ":"))) for event in events]
        build_seconds = time.perf_counter() - built
        # A COPY of this size lasts a second or two, so one run is at the mercy of whatever
        # else the machine does in that second: the median of COPY_REPEATS runs is the figure.
        timings: list[float] = []
        for _ in range(COPY_REPEATS):
            await conn.execute(f"TRUNCATE {COPY_TABLE}")
            started = time.perf_counter()
            for first in range(0, len(records), COPY_BATCH):
                batch = records[first : first + COPY_BATCH]
                await conn.copy_records_to_table(COPY_TABLE, records=batch, columns=EVENT_COLUMNS)
            timings.append(time.perf_counter() - started)
            await check_rows(conn, RAW_COPY, COPY_TABLE, execution_id, len(rows))
        return {
            "events": len(rows),
            "seconds": statistics.median(timings),
            "build_seconds": build_seconds,
        }
    finally:
        await conn.close()


# ---- naive: INSERT per event + stock broadcaster publish, subscriber in another process --------


def naive_subscriber_process(
    database_url: str,
    bus_url: str,
    channel: str,
    last_seq: int,
    ready: multiprocessing.synchronize.Event,
    reports: multiprocessing.Queue[dict[str, Any]],
) -> None:
    try:
        reports.put(asyncio.run(naive_consume(database_url, bus_url, channel, last_seq, ready)))
    except BaseException as exc:
        reports.put({"failure": f"{NAIVE} subscriber: {type(exc).__name__}: {exc}"})


async def naive_consume(
    database_url: str,
    bus_url: str,
    channel: str,
    last_seq: int,
    ready: multiprocessing.synchronize.Event,
) -> dict[str, Any]:
    """Decode every message and check its seq; the time.time() at which the last one arrived."""
    from broadcaster import Broadcast

    expected = 1
    conn = await asyncpg.connect(database_url)
    try:
        async with (
            Broadcast(bus_url) as broadcast,
            broadcast.subscribe(channel) as subscriber,
            # Stock redis backend: its listener may look for channels before the first one is
            # registered, find none and wait for the next subscribe; this second one wakes it.
            broadcast.subscribe(f"{channel}_wake"),
        ):
            while True:
                message = json.loads((await subscriber.get()).message)
                if message.get("probe"):
                    # The publisher probes until one gets through: stock backends may report a
                    # subscription before the bus has registered it.
                    ready.set()
                    continue
                if message.get("reference"):
                    row = await conn.fetchrow(
                        "SELECT data FROM runwire_event WHERE execution_id = $1 AND seq = $2",
                        message["execution_id"],
                        message["seq"],
                    )
                    if row is None:
                        return {"failure": f"{NAIVE}: no row for {message}"}
                    message["data"] = json.loads(row["data"])
                if message["seq"] != expected:
                    return {"failure": f"{NAIVE}: got seq {message['seq']}, expected {expected}"}
                if expected == last_seq:
                    return {"last_receipt": time.time()}
                expected += 1
    finally:
        await conn.close()


def naive_publisher_process(
    database_url: str,
    bus_url: str,
    channel: str,
    execution_id: str,
    ready: multiprocessing.synchronize.Event,
    reports: multiprocessing.Queue[dict[str, Any]],
) -> None:
    try:
        reports.put(asyncio.run(naive_publish(database_url, bus_url, channel, execution_id, ready)))
    except BaseException as exc:
        reports.put({"failure": f"{NAIVE} publisher: {type(exc).__name__}: {exc}"})


async def naive_publish(
    database_url: str,
    bus_url: str,
    channel: str,
    execution_id: str,
    ready: multiprocessing.synchronize.Event,
) -> dict[str, Any]:
    """Per event, one pooled Piccolo INSERT then one publish of the JSON event, sequentially."""
    from broadcaster import Broadcast

    from runwire.db import tables
    from runwire.db.engine import Database

    conn = await asyncpg.connect(database_url)
    try:
        # Naive runs at about 1k events/s: the first NAIVE_EVENTS rows (seq 1..) give its rate.
        rows = (await read_rows(conn, execution_id))[:NAIVE_EVENTS]
    finally:
        await conn.close()
    copy_id = str(uuid.uuid4())  # the same rows under another id, in the real table
    events = [
        {
            "execution_id": copy_id,
            "seq": row[1],
            "at": row[2],
            "type": row[3],
            "step_key": row[4],
            "attempt": row[5],
            "data": json.loads(row[6]),
        }
        for row in rows
    ]
    async with Database.open(database_url), Broadcast(bus_url) as broadcast:
        # Untimed warm-up (pool connections, prepared statements) under a third id.
        warmup_id = str(uuid.uuid4())
        for event in events[:WARMUP_ROWS]:
            await tables.Event.insert(tables.Event(**{**event, "execution_id": warmup_id}))
        # Stock postgres backend: it publishes and LISTENs on one connection, so concurrent
        # publishes would fail ("another operation is in progress"): one at a time, always.
        deadline = time.monotonic() + 60
        while not ready.is_set():
            if time.monotonic() > deadline:
                return {"failure": f"{NAIVE}: the subscriber never received a probe"}
            await broadcast.publish(channel, json.dumps({"probe": True}))
            await asyncio.sleep(0.05)
        references = 0
        started = time.time()
        for event in events:
            await tables.Event.insert(tables.Event(**event))
            message = json.dumps({**event, "at": event["at"].isoformat()})
            if len(message.encode()) > NOTIFY_LIMIT:
                # Postgres rejects a longer NOTIFY: such an event (the step's end carries its
                # output's tail) travels as a reference the subscriber reads back.
                references += 1
                message = json.dumps({"execution_id": copy_id, "seq": event["seq"], "reference": 1})
            await broadcast.publish(channel, message)
    conn = await asyncpg.connect(database_url)
    try:
        await check_rows(conn, NAIVE, "runwire_event", copy_id, len(rows))
    finally:
        await conn.close()
    lines = sum(str(e["data"].get("text", "")).count("\n") for e in events if e["type"] == "OUTPUT")
    return {"events": len(rows), "started": started, "references": references, "lines": lines}


def bench_naive(server: Server, run: RunwireRun) -> Result:
    """Publisher and subscriber each in its own process, on the server's database and bus."""
    database_url = server.env["RUNWIRE_DATABASE_URL"]
    bus_url = server.env["RUNWIRE_BUS_URL"]
    channel = f"bench_naive_{uuid.uuid4().hex[:12]}"
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    received: multiprocessing.Queue[dict[str, Any]] = context.Queue()
    published: multiprocessing.Queue[dict[str, Any]] = context.Queue()
    with (
        spawned(
            naive_subscriber_process,
            (database_url, bus_url, channel, min(run.last_seq, NAIVE_EVENTS), ready, received),
        ),
        spawned(
            naive_publisher_process,
            (database_url, bus_url, channel, run.execution_id, ready, published),
        ),
    ):
        publisher = collected(NAIVE, published, 60 + min(run.last_seq, NAIVE_EVENTS) / 200)
        subscriber = collected(NAIVE, received, 60)
    return Result(
        NAIVE,
        publisher["events"],
        subscriber["last_receipt"] - publisher["started"],
        publisher["lines"],
        references=publisher["references"],
    )


def bench_copy(server: Server, run: RunwireRun) -> Result:
    context = multiprocessing.get_context("spawn")
    reports: multiprocessing.Queue[dict[str, Any]] = context.Queue()
    database_url = server.env["RUNWIRE_DATABASE_URL"]
    with spawned(copy_process, (database_url, run.execution_id, reports)):
        report = collected(RAW_COPY, reports, 60 + run.last_seq / 1_000)
    return Result(
        RAW_COPY,
        report["events"],
        report["seconds"],
        run.result.lines,
        build_seconds=report["build_seconds"],
    )


# ---- plumbing -----------------------------------------------------------------------------------


@contextlib.contextmanager
def spawned(target: Callable[..., None], args: tuple[Any, ...]) -> Iterator[SpawnProcess]:
    """A spawned process for the block; killed if it has not ended 10 s after the block."""
    process = multiprocessing.get_context("spawn").Process(target=target, args=args)
    process.start()
    try:
        yield process
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()


def collected(
    variant: str, reports: multiprocessing.Queue[dict[str, Any]], seconds: float
) -> dict[str, Any]:
    """The next report, or a failure if there is none within `seconds` or it names one."""
    try:
        report = reports.get(timeout=seconds)
    except queue.Empty:
        raise BenchmarkFailed(f"{variant}: no result within {seconds:.0f} s") from None
    if "failure" in report:
        raise BenchmarkFailed(f"{variant}: {report['failure']}")
    return report


def failure(reports: multiprocessing.Queue[dict[str, Any]]) -> str:
    with contextlib.suppress(queue.Empty):
        return f": {reports.get(timeout=0.5).get('failure')}"
    return ""


# ---- the run and the report ---------------------------------------------------------------------


def run(lines: int, bus: str) -> None:
    with tempfile.TemporaryDirectory(prefix="runwire-event-path-") as temporary:
        directory = Path(temporary)
        with running_server(bus, directory / "server", settings=SETTINGS) as server:
            print_header(lines, bus, server)
            # Untimed warm-up execution: the server's first run pays for imports and pools.
            bench_runwire(server, min(lines, 1_000), directory)
            runwire = bench_runwire(server, lines, directory)
            copy = bench_copy(server, runwire)
            naive = bench_naive(server, runwire)
    print_table(runwire, naive, copy)


def print_header(lines: int, bus: str, server: Server) -> None:
    print("P1: events persisted + delivered per second, one subscriber, chunk-heavy execution")
    print(f"date:     {datetime.now(UTC).isoformat(timespec='seconds')}")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine:  {os.cpu_count()} cores, {platform.platform()}; load average {load} at start")
    print(f"python:   {platform.python_version()} ({platform.python_implementation()})")
    print(f"postgres: {postgres_version()} on 127.0.0.1; bus: {bus}")
    settings = " ".join(f"{name}={value}" for name, value in SETTINGS.items())
    print(f"server:   runwire serve (pid {server.process.pid}), defaults but {settings}")
    print(f"workload: one shell step writing {lines:,} lines of {LINE_BYTES} bytes, unpaced")
    print(f"command:  {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print()


def print_table(runwire: RunwireRun, naive: Result, copy: Result) -> None:
    print(
        f"{'variant':<10} {'events':>8} {'seconds':>8} {'events/s':>9} {'x raw COPY':>10}"
        f" {'lines/s':>9}"
    )
    for r in (runwire.result, naive, copy):
        print(
            f"{r.variant:<10} {r.events:>8,} {r.seconds:>8.3f} {r.rate:>9,.0f}"
            f" {r.rate / copy.rate:>10.3f} {r.lines_rate:>9,.0f}"
        )
    print()
    lines = runwire.result.lines
    print(
        f"runwire: {runwire.output_events:,} OutputChunk events carried the {lines:,} lines"
        f" ({lines / runwire.output_events:.1f} each, largest {runwire.largest_chunk:,} chars);"
        " events stamped from go on, timed from go to the terminal event's receipt"
    )
    print(
        f"runwire: the subscriber got them in {runwire.messages:,} messages"
        f" ({runwire.result.events / runwire.messages:.1f} events each)"
    )
    print(
        f"raw COPY writes the execution's {runwire.last_seq:,} rows (every seq), naive the"
        f" first {naive.events:,}; naive published {naive.references:,} of them as a reference"
        " to their row (JSON"
        f" over NOTIFY's {NOTIFY_LIMIT + 1:,}-byte limit; the same rule on either bus)"
    )
    with_build = copy.events / (copy.build_seconds + copy.seconds)
    print(
        f"raw COPY: the median of {COPY_REPEATS} runs; its rows were built before its clock"
        f" ({copy.build_seconds:.3f} s);"
        f" building them in the loop as well gives {with_build:,.0f} events/s"
    )
    print("target (not asserted): runwire >= 20,000 events/s and >= 0.25 x raw COPY")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--lines", type=int, default=DEFAULT_LINES, help="output lines the execution writes"
    )
    size.add_argument(
        "--quick", action="store_true", help=f"{QUICK_LINES:,} lines: a smoke run, not a figure"
    )
    parser.add_argument("--bus", choices=("postgres", "redis"), default="postgres")
    parser.add_argument(
        "--server", default=postgres.POSTGRES_SERVER, help="Postgres server URL, no database"
    )
    args = parser.parse_args()
    lines = QUICK_LINES if args.quick else args.lines
    if lines < 1:
        parser.error("--lines must be at least 1")
    # running_server creates its database on this server.
    postgres.POSTGRES_SERVER = args.server.rstrip("/")
    # The header (with the server's pid, for a profiler) shows before the long run.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        run(lines, args.bus)
    except BenchmarkFailed as exc:
        sys.exit(f"BENCHMARK FAILED: {exc}")


if __name__ == "__main__":
    main()
