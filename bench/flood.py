"""A step that floods its output: what it costs the server and the other executions.

One real `runwire serve` (Postgres, LISTEN/NOTIFY bus unless --backend sqlite). A quiet execution
prints a line every 10 ms for --seconds; one subscriber in this process measures P3-style
emit -> receive latency of its output events (receipt time minus the event's `at`). It runs twice
on the same server: alone (the baseline), then with a second execution that prints --flood-mb MB
of 100-byte lines as fast as it can, started once the quiet one is under way. Figures: the quiet
one's p50/p99/max latency in both runs; the flood's duration, its stored events and output, its
OutputTruncated marks; the server's RSS (VmRSS) before, at its peak, and 5 s after the flood;
the database's growth (Postgres).

Usage: .venv/bin/python bench/flood.py [--flood-mb 500] [--seconds 6] [--backend postgres|sqlite]
       [--setting RUNWIRE_X=value ...]   (e.g. RUNWIRE_OUTPUT_STEP_BYTES=0 to turn budgets off)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import websockets
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import FINISHED, START, BenchmarkFailed, graphql, process_cpu_seconds
from tests.support.server import Server, running_server

NICE = False
SUBSCRIPTION = """
subscription($id: ID!) {
  executionEvents(executionId: $id, afterSeq: 0) {
    events {
      seq at type
      ... on ExecutionStatusChanged { executionStatus }
      ... on OutputChunk { text }
      ... on OutputTruncated { limit droppedBytes droppedLines final }
    }
  }
}
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchmarkFailed("no VmRSS")


class PeakRss:
    """Samples a process's RSS every 20 ms in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, rss_kib(pid), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_kib(self.pid))


def python_step(key: str, script: str, nice: bool = False) -> str:
    # JSON strings are YAML strings.
    argv = json.dumps([*(["nice", "-n", "19"] if nice else []), sys.executable, "-c", script])
    return f"name: {key}\nsteps:\n  - {{key: {key}, kind: shell, with: {{argv: {argv}}}}}\n"


def quiet_definition(seconds: float) -> str:
    script = (
        "import time\n"
        f"for i in range({int(seconds * 100)}):\n"
        "    print(f'quiet {i}', flush=True)\n"
        "    time.sleep(0.01)\n"
    )
    return python_step("quiet", script)


def flood_definition(megabytes: int, nice: bool) -> str:
    script = (
        "import sys\n"
        "block = (b'x' * 99 + b'\\n') * 1000\n"
        f"for _ in range({megabytes * 10}): sys.stdout.buffer.write(block)\n"
    )
    return python_step("flood", script, nice)


def wait_finished(server: Server, execution_id: str) -> None:
    while graphql(server, FINISHED, {"id": execution_id})["execution"]["status"] not in (
        "SUCCEEDED",
        "FAILED",
    ):
        time.sleep(0.05)


def start(server: Server, definition: str) -> str:
    data = graphql(server, START, {"definition": definition})["startExecution"]
    if data["__typename"] != "StartExecutionSuccess":
        raise BenchmarkFailed(str(data))
    return str(data["execution"]["id"])


async def follow(server: Server, execution_id: str) -> list[tuple[float, dict[str, Any]]]:
    """Every event with its receipt time, checked for seq order, until complete."""
    received: list[tuple[float, dict[str, Any]]] = []
    async with connect(
        server.graphql_ws,
        subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
        max_size=None,
        compression=None,
    ) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {server.token}"}}
        await ws.send(json.dumps(init))
        await ws.recv()
        subscribe = {"query": SUBSCRIPTION, "variables": {"id": execution_id}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            if message["type"] == "complete":
                break
            if message["type"] != "next" or message["payload"].get("errors"):
                raise BenchmarkFailed(str(message)[:300])
            for event in message["payload"]["data"]["executionEvents"]["events"]:
                if event["seq"] != len(received) + 1:
                    raise BenchmarkFailed(f"seq {event['seq']} after {len(received)}")
                received.append((now, event))
    return received


def latencies_ms(received: list[tuple[float, dict[str, Any]]]) -> list[float]:
    return sorted(
        (at - datetime.fromisoformat(e["at"]).timestamp()) * 1000
        for at, e in received
        if e["type"] == "OUTPUT"
    )


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))]


async def quiet_run(
    server: Server, seconds: float, flood_mb: int | None
) -> tuple[list[float], dict[str, Any]]:
    quiet_id = start(server, quiet_definition(seconds))
    following = asyncio.create_task(follow(server, quiet_id))
    flood: dict[str, Any] = {}
    if flood_mb is not None:
        await asyncio.sleep(seconds / 4)
        began = time.monotonic()
        flood["began"] = time.time()
        cpu_before = process_cpu_seconds(server.process.pid)
        # In a thread: a blocking call here would delay the quiet one's receipts, not the server.
        flood_id = await asyncio.to_thread(start, server, flood_definition(flood_mb, NICE))
        # Polled in a thread, read once it ended: following it live here would put the parsing
        # of its messages in this loop, ahead of the quiet one's receipts.
        await asyncio.to_thread(wait_finished, server, flood_id)
        flood["seconds"] = time.monotonic() - began
        flood["cpu"] = process_cpu_seconds(server.process.pid) - cpu_before
        events = await follow(server, flood_id)
        flood["events"] = len(events)
        flood["status"] = events[-1][1].get("executionStatus")
        flood["kept_bytes"] = sum(len(e["text"]) for _, e in events if e["type"] == "OUTPUT")
        flood["marks"] = [e for _, e in events if e["type"] == "OUTPUT_TRUNCATED"]
    quiet = await following
    if quiet[-1][1].get("executionStatus") != "SUCCEEDED":
        raise BenchmarkFailed(f"quiet execution ended {quiet[-1][1]}")
    if os.environ.get("FLOOD_DEBUG") and flood:
        for at, e in quiet:
            if e["type"] == "OUTPUT":
                t = datetime.fromisoformat(e["at"]).timestamp()
                lat = (at - t) * 1000
                if lat > 100:
                    print(f"  slow: at {t - flood['began']:+.3f}s latency {lat:.0f} ms")
    return latencies_ms(quiet), flood


async def database_bytes(server: Server) -> int | None:
    url = server.env.get("RUNWIRE_DATABASE_URL")
    if not url:
        return None
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await connection.close()


def report(label: str, values: list[float]) -> str:
    return (
        f"{label}: {len(values)} events, p50 {percentile(values, 0.5):.2f} ms,"
        f" p99 {percentile(values, 0.99):.2f} ms, max {values[-1]:.2f} ms"
    )


async def bench(server: Server, flood_mb: int, seconds: float) -> None:
    pid = server.process.pid
    await quiet_run(server, 1.0, None)  # warm-up
    baseline, _ = await quiet_run(server, seconds, None)
    before_rss, before_db = rss_kib(pid), await database_bytes(server)
    with PeakRss(pid) as peak:
        flooded, flood = await quiet_run(server, seconds, flood_mb)
        await asyncio.sleep(5)
    after_rss, after_db = rss_kib(pid), await database_bytes(server)
    print(report("P3 quiet, alone      ", baseline))
    print(report("P3 quiet, with flood ", flooded))
    print(
        f"flood: {flood_mb} MB printed in {flood['seconds']:.1f} s ({flood['cpu']:.2f} s of server"
        f" CPU), ended {flood['status']};"
        f" {flood['events']} events stored, {flood['kept_bytes']:,} bytes of output kept"
    )
    for mark in flood["marks"]:
        print(
            f"  OutputTruncated {mark['limit']} final={mark['final']}:"
            f" {mark['droppedBytes']:,.0f} bytes, {mark['droppedLines']:,.0f} lines dropped"
        )
    print(
        f"server RSS: {before_rss / 1024:.0f} MB before, {peak.peak / 1024:.0f} MB peak,"
        f" {after_rss / 1024:.0f} MB 5 s after"
    )
    if before_db is not None and after_db is not None:
        print(f"database grew by {(after_db - before_db) / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood-mb", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--nice", action="store_true", help="run the flood at nice 19: tells CPU contention apart"
    )
    parser.add_argument("--setting", action="append", default=[], help="RUNWIRE_X=value")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.setting)
    global NICE
    NICE = args.nice
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with (
        tempfile.TemporaryDirectory() as directory,
        running_server(args.backend, Path(directory), settings=settings) as server,
    ):
        print(f"server pid {server.process.pid}, backend {args.backend}, settings {settings}")
        asyncio.run(bench(server, args.flood_mb, args.seconds))


if __name__ == "__main__":
    main()
