"""P8 print → subscriber latency with many executions running, timed from the print.

N executions of three `shell` steps each, every step printing 50 lines 10 ms apart, run at once
(N runner slots); one graphql-transport-ws subscriber per execution, all in this process,
follows it from `afterSeq: 0`. Each line carries the wall-clock nanoseconds at which the step's
process printed it; latency is the time a subscriber received the line minus that stamp, so it
includes the pipe read, the coalescing window (RUNWIRE_OUTPUT_COALESCE_MS), the event log's flush,
the bus and the delivery: everything between a program's print and a screen.

The first step of each execution first waits (polling in its own process) for a file that this
benchmark creates once every subscription is acknowledged, so no line is printed before its
subscriber follows.

Baseline, in the same run: the same N x 3 programs run by this process itself (asyncio
subprocesses, three after one another per "execution", N at once), each line read from the pipe
and timed alike: the floor of spawning a process and reading its pipe on this machine, without
Runwire.

Target (issue 21): p99 ≤ 50 ms with 100 executions.

Usage: .venv/bin/python bench/line_latency.py [--executions 1 8 100] [--backend sqlite] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import websockets

# Run from the repository root or from bench/: the test support package lives at the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BenchmarkFailed, graphql
from tests.support.server import Server, running_server

LINES = 50
PAUSE = 0.01
# The benchmark's own interpreter by its path, not `python3` from PATH: a version manager's
# shim there (pyenv's runs bash and pyenv first) cost ~150 ms of CPU per start here, and 300
# of them at 100 executions saturated the machine in both variants. -I -S: no site, a fast start.
PYTHON = (sys.executable, "-I", "-S", "-c")
STEPS = 3
PRINTER = (
    "import sys, time\n"
    f"for _ in range({LINES}):\n"
    "    print(time.time_ns(), flush=True)\n"
    f"    time.sleep({PAUSE})\n"
)
START_BATCH = """
mutation($input: StartBatchInput!) {
  startBatch(input: $input) {
    __typename
    ... on BatchSuccess { batch { id executions(first: 1000) { id } } }
    ... on Error { message }
  }
}
"""
FOLLOW = """
subscription($id: ID!) {
  executionEvents(executionId: $id, afterSeq: 0) {
    events { seq type ... on OutputChunk { text } }
  }
}
"""


def definition(go: Path) -> str:
    # The first step waits in its own process: a shell loop forking `sleep` every 5 ms made
    # 20,000 processes a second at 100 executions, starving the server before the first print.
    wait = f"import os, time\nwhile not os.path.exists({str(go)!r}):\n    time.sleep(0.005)\n"
    steps = [
        {
            "key": f"s{index}",
            "kind": "shell",
            "with": {"argv": [*PYTHON, (wait if index == 0 else "") + PRINTER]},
        }
        for index in range(STEPS)
    ]
    return json.dumps({"name": "bench-lines", "steps": steps})


def stamps(text: str, received: int) -> list[float]:
    """Milliseconds from each stamped line's print to `received`."""
    return [(received - int(line)) / 1e6 for line in text.split() if line.isdigit()]


async def follow(server: Server, execution_id: str, ready: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    async with websockets.connect(
        server.graphql_ws, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {server.token}"}}
        await ws.send(json.dumps(init))
        if json.loads(await ws.recv())["type"] != "connection_ack":
            raise BenchmarkFailed("no connection_ack")
        payload = {"query": FOLLOW, "variables": {"id": execution_id}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        # The first batch (the QUEUED or RUNNING status) says the subscription is live.
        first = True
        async for raw in ws:
            received = time.time_ns()
            message = json.loads(raw)
            if message["type"] == "complete":
                return latencies
            if message["type"] != "next":
                raise BenchmarkFailed(f"subscription: {message}")
            if first:
                ready.set()
                first = False
            for event in message["payload"]["data"]["executionEvents"]["events"]:
                if event["type"] == "OUTPUT":
                    latencies.extend(stamps(event["text"], received))
    raise BenchmarkFailed(f"{execution_id}: closed before complete")


async def runwire(server: Server, executions: int, folder: Path) -> list[float]:
    go = folder / f"go-{executions}"
    started = graphql(
        server,
        START_BATCH,
        {
            "input": {
                "definition": definition(go),
                "runs": [{} for _ in range(executions)],
                "concurrency": executions,
            }
        },
    )["startBatch"]
    if started["__typename"] != "BatchSuccess":
        raise BenchmarkFailed(f"startBatch: {started}")
    ids = [e["id"] for e in started["batch"]["executions"]]
    ready = [asyncio.Event() for _ in ids]
    followers = [
        asyncio.create_task(follow(server, execution_id, event))
        for execution_id, event in zip(ids, ready, strict=True)
    ]
    async with asyncio.timeout(120):
        await asyncio.gather(*(event.wait() for event in ready))
    go.touch()
    async with asyncio.timeout(300):
        found = await asyncio.gather(*followers)
    latencies = [latency for one in found for latency in one]
    if len(latencies) != executions * STEPS * LINES:
        raise BenchmarkFailed(f"{len(latencies)} lines received, not {executions * STEPS * LINES}")
    return latencies


async def bare(executions: int) -> list[float]:
    async def one_execution() -> list[float]:
        latencies: list[float] = []
        for _ in range(STEPS):
            process = await asyncio.create_subprocess_exec(
                *PYTHON, PRINTER, stdout=asyncio.subprocess.PIPE
            )
            assert process.stdout is not None
            async for line in process.stdout:
                latencies.extend(stamps(line.decode(), time.time_ns()))
            await process.wait()
        return latencies

    found = await asyncio.gather(*(one_execution() for _ in range(executions)))
    return [latency for one in found for latency in one]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def row(label: str, values: list[float]) -> str:
    p50, p99 = statistics.median(values), percentile(values, 0.99)
    return (
        f"  {label:10} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   max {max(values):7.1f} ms"
        f"   ({len(values):,} lines)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, nargs="+", default=[1, 8, 100])
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--quick", action="store_true", help="1 and 4 executions: a smoke run")
    args = parser.parse_args()
    counts = [1, 4] if args.quick else args.executions
    with tempfile.TemporaryDirectory(prefix="runwire-bench-lines-") as name:
        folder = Path(name)
        settings = {
            "RUNWIRE_LOAD_EXAMPLES": "false",
            "RUNWIRE_RUNNER_SLOTS": str(max(counts)),
        }
        with running_server(args.backend, folder / "server", settings) as server:
            print(f"P8 print -> subscriber latency, {args.backend}, {STEPS} steps x {LINES} lines")
            for executions in counts:
                measured = asyncio.run(runwire(server, executions, folder))
                floor = asyncio.run(bare(executions))
                target = " (target p99 <= 50 ms)" if executions >= 100 else ""
                print(f"{executions} execution(s) at once{target}")
                print(row("Runwire", measured))
                print(row("bare pipe", floor))


if __name__ == "__main__":
    main()
