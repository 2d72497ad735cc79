"""P2 fan-out and P3 emit → receive latency, each next to a bare `websockets` baseline.

P2: 10 executions print output lines at a steady pace; 100, then 1000 graphql-transport-ws
subscribers (spread over several client processes, each socket following one execution from
`afterSeq: 0`) receive them. Figures: total deliveries per second (one event received by one
subscriber; events inside a batch message each count) and p50/p99 latency (receipt time minus the
event's own `at`). Baseline: a bare `websockets` server in its own process that serializes each
event once and broadcasts the frame to the same number of clients at the same pace, read by the
same client code.

P3: one execution prints a line every millisecond for 10 s (the server coalesces lines arriving
within RUNWIRE_OUTPUT_COALESCE_MS into one chunk event); one subscriber in its own process.
Figures: lines/s and events/s achieved, p50/p99 latency from the event's `at` to receipt. Baseline:
the bare server pushing one frame per line at the same pace.

Every subscriber must get seqs 1..last exactly once, in order, then `complete`; for Runwire `last`
is the execution's `lastSeq` and its status SUCCEEDED. Anything else fails loudly.

Usage: .venv/bin/python bench/fanout.py [--quick] [--bus postgres|redis] [--subscribers 100 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import multiprocessing.synchronize
import os
import platform
import queue
import socket
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, Final

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast, serve

# Run from the repository root or from bench/: the test support package lives at the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    FINISHED,
    START,
    BenchmarkFailed,
    graphql,
    postgres_version,
    process_cpu_seconds,
)
from tests.support.server import Server, free_port, running_server

RUNWIRE: Final = "runwire"
BASELINE: Final = "websockets"
PROTOCOL: Final = "graphql-transport-ws"
CLIENT_PROCESSES: Final = 4
CONNECT_CONCURRENCY: Final = 50  # sockets one client process opens at a time
SUBSCRIPTION: Final = """
subscription Follow($id: ID!) {
  executionEvents(executionId: $id, afterSeq: 0) {
    lastSeq
    events { seq at type ... on OutputChunk { stream text } }
  }
}
"""


@dataclass(frozen=True, slots=True)
class Workload:
    """What every stream emits once the go file appears: `lines` lines, one every `interval`."""

    streams: int
    subscribers: int
    lines: int
    interval: float

    @property
    def offered_lines_per_second(self) -> float:
        return self.streams / self.interval


@dataclass(slots=True)
class ClientReport:
    """What one client process saw; latencies in seconds, counted only for events after go."""

    deliveries: int = 0
    latencies: array[float] = field(default_factory=lambda: array("d"))
    output_events: int = 0
    output_lines: int = 0
    first_at: float = float("inf")
    last_at: float = 0.0
    last_receipt: float = 0.0
    last_seqs: list[tuple[str, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Figure:
    variant: str
    subscribers: int
    deliveries: int
    seconds: float
    latencies: Sequence[float]
    lines: int = 0
    output_events: int = 0
    output_lines: int = 0
    """Lines received by all subscribers together (a chunk event carries several)."""
    emit_seconds: float = 0.0
    interval: float = 0.0
    """Seconds between an execution's lines."""
    server_cpu_seconds: float = 0.0
    """CPU the server process itself used from go until the last client reported."""

    @property
    def cpu_us_per_delivery(self) -> float:
        return 1e6 * self.server_cpu_seconds / self.deliveries

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# ---- the client: plain websockets speaking graphql-transport-ws ------------------------------


def client_process(
    url: str,
    token: str,
    stream_ids: list[str],
    ready: multiprocessing.synchronize.Semaphore,
    go: Synchronized[float],
    reports: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """One process: a socket per entry of `stream_ids`, each following that stream to the end."""
    try:
        report = asyncio.run(follow_all(url, token, stream_ids, ready, go))
    except BaseException as exc:  # the parent must hear of every failure, not wait for a report
        report = ClientReport(failures=[f"client process: {type(exc).__name__}: {exc}"])
    reports.put(
        {
            "deliveries": report.deliveries,
            "latencies": report.latencies.tobytes(),
            "output_events": report.output_events,
            "output_lines": report.output_lines,
            "first_at": report.first_at,
            "last_at": report.last_at,
            "last_receipt": report.last_receipt,
            "last_seqs": report.last_seqs,
            "failures": report.failures,
        }
    )


async def follow_all(
    url: str,
    token: str,
    stream_ids: list[str],
    ready: multiprocessing.synchronize.Semaphore,
    go: Synchronized[float],
) -> ClientReport:
    report = ClientReport()
    at_cache: dict[str, float] = {}
    opening = asyncio.Semaphore(CONNECT_CONCURRENCY)
    async with asyncio.TaskGroup() as group:
        for stream_id in stream_ids:
            group.create_task(
                follow_one(url, token, stream_id, opening, ready, go, report, at_cache)
            )
    return report


async def follow_one(
    url: str,
    token: str,
    stream_id: str,
    opening: asyncio.Semaphore,
    ready: multiprocessing.synchronize.Semaphore,
    go: Synchronized[float],
    report: ClientReport,
    at_cache: dict[str, float],
) -> None:
    """Subscribe from seq 0, release `ready` at the first message, check seqs until complete."""
    expected = 1
    announced = False
    async with opening:
        # No compression on either side: the benchmark measures the event path, not zlib.
        ws = await connect(
            url,
            subprotocols=[websockets.Subprotocol(PROTOCOL)],
            compression=None,
            max_size=64 * 1024 * 1024,
            ping_interval=None,
            open_timeout=60,
        )
    async with ws:
        await start_subscription(ws, token, stream_id)
        async for raw in ws:
            received = time.time()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
                continue
            if kind == "complete":
                report.last_seqs.append((stream_id, expected - 1))
                return
            if kind != "next" or message["payload"].get("errors"):
                report.failures.append(f"{stream_id}: unexpected message {str(message)[:300]}")
                return
            if not announced:
                announced = True
                ready.release()
            started = go.value
            for event in message["payload"]["data"]["executionEvents"]["events"]:
                if event["seq"] != expected:
                    report.failures.append(
                        f"{stream_id}: got seq {event['seq']}, expected {expected}"
                    )
                    return
                expected += 1
                at_text = event["at"]
                at = at_cache.get(at_text)
                if at is None:
                    at = at_cache[at_text] = datetime.fromisoformat(at_text).timestamp()
                # Events stamped before go are the backlog read at subscription: not timed.
                if started and at >= started:
                    report.deliveries += 1
                    report.latencies.append(received - at)
                    report.last_receipt = max(report.last_receipt, received)
                    if event["type"] == "OUTPUT":
                        report.output_events += 1
                        report.output_lines += event["text"].count("\n")
                        report.first_at = min(report.first_at, at)
                        report.last_at = max(report.last_at, at)
    report.failures.append(f"{stream_id}: ws closed before complete ({ws.close_code})")


async def start_subscription(ws: ClientConnection, token: str, stream_id: str) -> None:
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
    )
    acknowledged = json.loads(await asyncio.wait_for(ws.recv(), 60))
    if acknowledged.get("type") != "connection_ack":
        raise BenchmarkFailed(f"connection_init answered with {acknowledged}")
    await ws.send(
        json.dumps(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": SUBSCRIPTION, "variables": {"id": stream_id}},
            }
        )
    )


# ---- the baseline: a bare websockets server pushing pre-serialized frames --------------------


def baseline_process(port: int, workload: Workload, go_file: str) -> None:
    """Serve graphql-transport-ws just enough for the client; emit once the go file exists."""
    asyncio.run(baseline_serve(port, workload, Path(go_file)))


async def baseline_serve(port: int, workload: Workload, go_file: Path) -> None:
    followers: dict[str, set[ServerConnection]] = {str(s): set() for s in range(workload.streams)}
    first = frame(1, "EXECUTION_STATUS", None)

    async def handle(ws: ServerConnection) -> None:
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "connection_init":
                await ws.send(json.dumps({"type": "connection_ack"}))
            elif message["type"] == "subscribe":
                followers[message["payload"]["variables"]["id"]].add(ws)
                await ws.send(first)  # the "backlog": seq 1, before go

    async with serve(
        handle,
        "127.0.0.1",
        port,
        subprotocols=[websockets.Subprotocol(PROTOCOL)],
        compression=None,
        ping_interval=None,
        max_queue=None,
    ):
        deadline = time.monotonic() + 300
        while not await asyncio.to_thread(go_file.exists):
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.002)
        async with asyncio.TaskGroup() as group:
            for sockets in followers.values():
                group.create_task(baseline_emit(sockets, workload))
        # Let the last frames drain before the server closes the sockets, and stay up until
        # told (so the parent can read this process's CPU time).
        deadline = time.monotonic() + 300
        while not await asyncio.to_thread(stop_file(go_file).exists):
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)


async def baseline_emit(sockets: set[ServerConnection], workload: Workload) -> None:
    """Seq 2..lines+1 are output lines, seq lines+2 the terminal status, then complete."""
    tick = time.monotonic()
    for line in range(1, workload.lines + 1):
        broadcast(sockets, frame(line + 1, "OUTPUT", f"line-{line}\n"))
        tick += workload.interval
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
    broadcast(sockets, frame(workload.lines + 2, "EXECUTION_STATUS", None))
    broadcast(sockets, json.dumps({"id": "1", "type": "complete"}))


def frame(seq: int, kind: str, text: str | None) -> str:
    """One `next` message holding one event, stamped now and serialized once for every socket."""
    event: dict[str, Any] = {"seq": seq, "at": datetime.now(UTC).isoformat(), "type": kind}
    if text is not None:
        event |= {"stream": "STDOUT", "text": text}
    payload = {"data": {"executionEvents": {"lastSeq": seq, "events": [event]}}}
    return json.dumps({"id": "1", "type": "next", "payload": payload})


# ---- one measured run: processes, readiness, go, collection ------------------------------------


def measure(
    variant: str,
    url: str,
    token: str,
    stream_ids: list[str],
    workload: Workload,
    go_file: Path,
    processes: int,
    server_pid: int,
) -> tuple[Figure, list[tuple[str, int]]]:
    """Spread the subscribers over client processes, start the emitters, and collect."""
    context = multiprocessing.get_context("spawn")
    ready = context.Semaphore(0)
    go = context.Value("d", 0.0)
    reports: multiprocessing.Queue[dict[str, Any]] = context.Queue()
    assignments: list[list[str]] = [[] for _ in range(processes)]
    for index in range(workload.subscribers):
        assignments[index % processes].append(stream_ids[index % len(stream_ids)])
    clients = [
        context.Process(
            target=client_process,
            args=(url, token, ids, ready, go, reports),
            name=f"bench-client-{n}",
        )
        for n, ids in enumerate(assignments)
        if ids
    ]
    for client in clients:
        client.start()
    try:
        deadline = time.monotonic() + 60 + workload.subscribers / 20
        for count in range(workload.subscribers):
            if not ready.acquire(timeout=max(0.1, deadline - time.monotonic())):
                reported = drain_failures(reports)
                raise BenchmarkFailed(
                    f"{variant}: only {count} of {workload.subscribers} subscribers"
                    f" got their first message{reported}"
                )
        cpu_before = process_cpu_seconds(server_pid)
        go.value = time.time()
        go_file.touch()
        emit_seconds = workload.lines * workload.interval
        budget = 60 + 2 * emit_seconds + workload.subscribers * workload.lines / 2000
        collected = collect(variant, reports, len(clients), budget)
        server_cpu = process_cpu_seconds(server_pid) - cpu_before
    finally:
        for client in clients:
            client.join(timeout=5)
            if client.is_alive():
                client.kill()
                client.join()
    failures = [failure for report in collected for failure in report["failures"]]
    if failures:
        raise BenchmarkFailed(f"{variant}: {len(failures)} failures, first: {failures[:3]}")
    latencies = array("d")
    for report in collected:
        latencies.frombytes(report["latencies"])
    deliveries = sum(report["deliveries"] for report in collected)
    if deliveries == 0:
        raise BenchmarkFailed(f"{variant}: no event arrived after go")
    last_seqs = [pair for report in collected for pair in report["last_seqs"]]
    if len(last_seqs) != workload.subscribers:
        raise BenchmarkFailed(f"{variant}: {len(last_seqs)} of {workload.subscribers} completed")
    first_at = min(report["first_at"] for report in collected)
    last_at = max(report["last_at"] for report in collected)
    figure = Figure(
        variant=variant,
        subscribers=workload.subscribers,
        deliveries=deliveries,
        seconds=max(report["last_receipt"] for report in collected) - go.value,
        latencies=latencies,
        lines=workload.lines * workload.streams,
        # Distinct events: each one reached every subscriber of its stream.
        output_events=sum(r["output_events"] for r in collected)
        * workload.streams
        // workload.subscribers,
        output_lines=sum(r["output_lines"] for r in collected),
        emit_seconds=last_at - first_at,
        interval=workload.interval,
        server_cpu_seconds=server_cpu,
    )
    return figure, last_seqs


def collect(
    variant: str, reports: multiprocessing.Queue[dict[str, Any]], count: int, budget: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + budget
    collected: list[dict[str, Any]] = []
    while len(collected) < count:
        try:
            collected.append(reports.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            raise BenchmarkFailed(
                f"{variant}: {count - len(collected)} client processes had no result"
                f" within {budget:.0f} s"
            ) from None
    return collected


def drain_failures(reports: multiprocessing.Queue[dict[str, Any]]) -> str:
    failures: list[str] = []
    with contextlib.suppress(queue.Empty):
        while True:
            failures += reports.get(timeout=0.5)["failures"]
    return f"; client failures: {failures[:3]}" if failures else ""


# ---- the Runwire side -------------------------------------------------------------------------


def emitter_definition(workload: Workload, go_file: Path, name: str) -> str:
    """A one-step shell execution: wait for the go file, then print lines at a steady pace."""
    code = (
        "import os, sys, time\n"
        "deadline = time.monotonic() + 300\n"
        f"while not os.path.exists({str(go_file)!r}):\n"
        "    if time.monotonic() > deadline: sys.exit(3)\n"
        "    time.sleep(0.002)\n"
        "tick = time.monotonic()\n"
        f"for line in range(1, {workload.lines} + 1):\n"
        "    sys.stdout.write(f'line-{line}\\n'); sys.stdout.flush()\n"
        f"    tick += {workload.interval!r}\n"
        "    time.sleep(max(0.0, tick - time.monotonic()))\n"
    )
    step = {"key": "emit", "kind": "shell", "with": {"argv": [sys.executable, "-c", code]}}
    return json.dumps({"name": name, "steps": [step]})


def bench_runwire(
    server: Server, workload: Workload, directory: Path, processes: int, label: str
) -> Figure:
    go_file = directory / f"go-{label}"
    ids: list[str] = []
    for stream in range(workload.streams):
        definition = emitter_definition(workload, go_file, f"fanout-{label}-{stream}")
        result = graphql(server, START, {"definition": definition})["startExecution"]
        if result["__typename"] != "StartExecutionSuccess":
            raise BenchmarkFailed(f"startExecution: {result}")
        ids.append(result["execution"]["id"])
    url = server.graphql_ws
    try:
        figure, last_seqs = measure(
            RUNWIRE, url, server.token, ids, workload, go_file, processes, server.process.pid
        )
    finally:
        go_file.touch()  # never leave an emitter waiting
    finished = {i: graphql(server, FINISHED, {"id": i})["execution"] for i in ids}
    for execution_id, last in last_seqs:
        execution = finished[execution_id]
        if execution["status"] != "SUCCEEDED" or execution["lastSeq"] != last:
            raise BenchmarkFailed(
                f"{RUNWIRE}: a subscriber of {execution_id} ended at seq {last};"
                f" the execution is {execution['status']} at lastSeq {execution['lastSeq']}"
            )
    return figure


def bench_baseline(workload: Workload, directory: Path, processes: int, label: str) -> Figure:
    go_file = directory / f"go-baseline-{label}"
    port = free_port()
    context = multiprocessing.get_context("spawn")
    server = context.Process(
        target=baseline_process, args=(port, workload, str(go_file)), name="bench-baseline"
    )
    server.start()
    assert server.pid is not None  # started
    try:
        wait_listening(port)
        ids = [str(stream) for stream in range(workload.streams)]
        figure, last_seqs = measure(
            BASELINE, f"ws://127.0.0.1:{port}/", "", ids, workload, go_file, processes, server.pid
        )
    finally:
        go_file.touch()
        stop_file(go_file).touch()
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
            server.join()
    wrong = [(i, last) for i, last in last_seqs if last != workload.lines + 2]
    if wrong:
        raise BenchmarkFailed(f"{BASELINE}: streams ended early: {wrong[:3]}")
    return figure


def stop_file(go_file: Path) -> Path:
    return go_file.with_name(go_file.name + ".stop")


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise BenchmarkFailed(f"{BASELINE}: server not listening on {port}")


# ---- the runs and the report -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FanoutRun:
    """One P2 measurement: this many subscribers, each execution printing a line per interval."""

    subscribers: int
    interval: float


@dataclass(frozen=True, slots=True)
class Plan:
    fanout_runs: tuple[FanoutRun, ...]
    streams: int
    fanout_seconds: float
    latency_seconds: float
    latency_interval: float
    processes: int


# P2 at a sustainable pace (a line every 50 ms per execution: 20,000 line deliveries/s offered
# to 1000 subscribers, above the 15k target) for latency, then at 10 ms (100,000/s offered, more
# than either server can send) for the saturated throughput.
FULL: Final = Plan(
    (FanoutRun(100, 0.050), FanoutRun(1000, 0.050), FanoutRun(1000, 0.010)),
    10,
    4.0,
    10.0,
    0.001,
    CLIENT_PROCESSES,
)
QUICK: Final = Plan((FanoutRun(20, 0.010),), 2, 1.0, 1.0, 0.001, 2)


def run(plan: Plan, bus: str, keep_server: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="runwire-fanout-") as temporary:
        directory = Path(temporary)
        settings = {"RUNWIRE_RUNNER_SLOTS": str(max(8, plan.streams + 2))}
        with running_server(bus, directory / "server", settings=settings) as server:
            print_header(plan, bus, server)
            fanout: list[tuple[Figure, Figure]] = []
            for number, fanout_run in enumerate(plan.fanout_runs):
                subscribers = fanout_run.subscribers
                workload = Workload(
                    streams=plan.streams,
                    subscribers=subscribers,
                    lines=round(plan.fanout_seconds / fanout_run.interval),
                    interval=fanout_run.interval,
                )
                processes = min(plan.processes, subscribers)
                label = f"p2-{number}-{subscribers}"
                runwire = bench_runwire(server, workload, directory, processes, label)
                baseline = bench_baseline(workload, directory, processes, label)
                fanout.append((runwire, baseline))
            steady = Workload(
                streams=1,
                subscribers=1,
                lines=round(plan.latency_seconds / plan.latency_interval),
                interval=plan.latency_interval,
            )
            latency = (
                bench_runwire(server, steady, directory, 1, "p3"),
                bench_baseline(steady, directory, 1, "p3"),
            )
            if keep_server:
                input(f"server pid {server.process.pid} still running; press Enter to stop ")
    print_fanout(plan, fanout)
    print()
    print_latency(plan, latency)


def print_header(plan: Plan, bus: str, server: Server) -> None:
    print("P2 fan-out and P3 emit -> receive latency (graphql-transport-ws subscribers)")
    print(f"date:     {datetime.now(UTC).isoformat(timespec='seconds')}")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine:  {os.cpu_count()} cores, {platform.platform()}; load average {load} at start")
    print(f"python:   {platform.python_version()} ({platform.python_implementation()})")
    print(f"postgres: {postgres_version()} on 127.0.0.1; bus: {bus}")
    print(f"server:   runwire serve (pid {server.process.pid}), defaults but runner slots")
    print(f"command:  {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print()


def print_fanout(plan: Plan, rows: list[tuple[Figure, Figure]]) -> None:
    print(
        f"P2 fan-out: {plan.streams} executions, each printing a line every `every ms` for"
        f" {plan.fanout_seconds:g} s; subscribers over {plan.processes} client processes"
    )
    print(
        f"{'subscribers':>11} {'every ms':>8} {'offered/s':>9} {'variant':<10} {'events':>7}"
        f" {'deliveries':>10} {'seconds':>8} {'deliveries/s':>12} {'lines/s':>9} {'p50 ms':>8}"
        f" {'p99 ms':>8} {'x baseline':>10} {'server us/delivery':>18}"
    )
    for runwire, baseline in rows:
        for figure in (runwire, baseline):
            offered = figure.subscribers / figure.interval
            print(
                f"{figure.subscribers:>11} {figure.interval * 1000:>8g} {offered:>9,.0f}"
                f" {figure.variant:<10} {figure.output_events:>7,}"
                f" {figure.deliveries:>10,}"
                f" {figure.seconds:>8.2f} {figure.rate:>12,.0f}"
                f" {figure.output_lines / figure.seconds:>9,.0f}"
                f" {figure.percentile_ms(0.50):>8.1f} {figure.percentile_ms(0.99):>8.1f}"
                f" {figure.rate / baseline.rate:>10.2f} {figure.cpu_us_per_delivery:>18.1f}"
            )
    print(
        "server us/delivery: CPU of the server process itself (not the emitters) from go to"
        " the last report, per delivery; clients and servers share the 2 cores, so where"
        " deliveries/s is bounded by the clients this is the server's own cost"
    )
    print(
        "events: distinct output events after go (Runwire coalesces lines into chunk events);"
        " lines/s: output lines received by all subscribers per second;"
        " offered/s: line deliveries per second the executions offer (subscribers / interval)"
    )
    print("x baseline: deliveries/s over the websockets baseline's deliveries/s")
    print("targets (not asserted): >= 15,000 deliveries/s with 1000 subscribers, p99 <= 50 ms")


def print_latency(plan: Plan, pair: tuple[Figure, Figure]) -> None:
    print(
        f"P3 emit -> receive: one execution, a line every {plan.latency_interval * 1000:g} ms"
        f" for {plan.latency_seconds:g} s, one subscriber"
    )
    print(
        f"{'variant':<10} {'lines/s':>8} {'events/s':>9} {'events':>7}"
        f" {'p50 ms':>8} {'p99 ms':>8} {'x baseline p99':>14}"
    )
    baseline = pair[1]
    for figure in pair:
        span = figure.emit_seconds or float("nan")
        lines, events = figure.lines / span, figure.output_events / span
        print(
            f"{figure.variant:<10} {lines:>8,.0f} {events:>9,.0f}"
            f" {figure.output_events:>7,} {figure.percentile_ms(0.50):>8.2f}"
            f" {figure.percentile_ms(0.99):>8.2f}"
            f" {figure.percentile_ms(0.99) / baseline.percentile_ms(0.99):>14.2f}"
        )
    print("targets (not asserted): p50 <= 5 ms, p99 <= 20 ms")


def main(argv: Iterator[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--bus", choices=("postgres", "redis"), default="postgres")
    parser.add_argument(
        "--subscribers",
        type=int,
        nargs="+",
        help="P2 subscriber counts, instead of the default runs (100 and 1000 at 50 ms, 1000 at"
        " 10 ms)",
    )
    parser.add_argument(
        "--interval-ms",
        type=float,
        default=50.0,
        help="P2 with --subscribers: ms between an execution's lines (default 50)",
    )
    parser.add_argument(
        "--keep-server", action="store_true", help="wait for Enter before stopping (profiling)"
    )
    args = parser.parse_args(None if argv is None else list(argv))
    # The header (with the server's pid, for a profiler) shows before the long run.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    plan = QUICK if args.quick else FULL
    if args.subscribers:
        if min(args.subscribers) < 1:
            parser.error("--subscribers must be at least 1")
        if args.interval_ms <= 0:
            parser.error("--interval-ms must be positive")
        runs = tuple(FanoutRun(n, args.interval_ms / 1000) for n in args.subscribers)
        plan = dataclasses.replace(plan, fanout_runs=runs)
    try:
        run(plan, args.bus, args.keep_server)
    except BenchmarkFailed as exc:
        sys.exit(f"BENCHMARK FAILED: {exc}")


if __name__ == "__main__":
    main()
