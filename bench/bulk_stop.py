"""B1 stopping many executions at once: `stopBatch` against stopping each execution.

Phase 1, queued executions: one `runwire serve` without a runner (every execution stays
QUEUED), `--batches` batches of 1,000 runs of one trivial step. Figures:
- `stopBatch` of every batch, one after another: seconds in all and per execution;
- baseline, in the same run: `stopExecution` of each execution of one more batch of 1,000, one
  after another (what stopBatch did per execution before, and what a client does without it).
Target (issue 21): 10,000 queued executions stopped in under 2 s.

Phase 2, running executions: a server with `--running` runner slots, two batches of that many
`shell` steps running `sleep 60` (processes to interrupt). Figures: from the stop until every
execution of the batch has ended, for `stopBatch`, next to `stopExecution` of each.

Usage: .venv/bin/python bench/bulk_stop.py [--batches N] [--running N] [--backend sqlite]
       [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Run from the repository root or from bench/: the test support package lives at the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BenchmarkFailed, graphql
from tests.support.server import Server, running_server

TRIVIAL = {"name": "bench-queued", "steps": [{"key": "a", "kind": "sleep", "with": {"seconds": 0}}]}
SLEEPER = {
    "name": "bench-running",
    "steps": [{"key": "a", "kind": "shell", "with": {"argv": ["sleep", "60"]}}],
}
START_BATCH = """
mutation($input: StartBatchInput!) {
  startBatch(input: $input) {
    __typename
    ... on BatchSuccess { batch { id executions(first: 1000) { id } } }
    ... on Error { message }
  }
}
"""
STOP_BATCH = """
mutation($id: ID!) {
  stopBatch(id: $id) { __typename ... on BatchSuccess { batch { queued running cancelled } } }
}
"""
STOP = "mutation($id: ID!) { stopExecution(id: $id) { __typename } }"
BATCH = "query($id: ID!) { batch(id: $id) { total queued running cancelled progress } }"


def start_batch(server: Server, definition: dict[str, object], runs: int) -> tuple[str, list[str]]:
    payload = graphql(
        server,
        START_BATCH,
        {
            "input": {
                "definition": json.dumps(definition),
                "runs": [{} for _ in range(runs)],
                "concurrency": 1000,
            }
        },
    )["startBatch"]
    if payload["__typename"] != "BatchSuccess":
        raise BenchmarkFailed(f"startBatch: {payload}")
    batch = payload["batch"]
    return str(batch["id"]), [str(e["id"]) for e in batch["executions"]]


def until(done: Callable[[], bool], timeout: float) -> None:
    started = time.perf_counter()
    while not done():
        if time.perf_counter() - started > timeout:
            raise BenchmarkFailed(f"not done within {timeout:.0f} s")
        time.sleep(0.05)


def batch_of(server: Server, batch_id: str) -> dict[str, float]:
    return dict(graphql(server, BATCH, {"id": batch_id})["batch"])


def stop_each(server: Server, ids: list[str]) -> None:
    for execution_id in ids:
        result = graphql(server, STOP, {"id": execution_id})["stopExecution"]
        if result["__typename"] != "StopExecutionSuccess":
            raise BenchmarkFailed(f"stopExecution: {result}")


def queued_phase(backend: str, batches: int, folder: Path) -> None:
    settings = {"RUNWIRE_LOAD_EXAMPLES": "false", "RUNWIRE_RUNNER": "false"}
    with running_server(backend, folder / "queued", settings) as server:
        bulk = [start_batch(server, TRIVIAL, 1000)[0] for _ in range(batches)]
        _, one_by_one = start_batch(server, TRIVIAL, 1000)
        started = time.perf_counter()
        for batch_id in bulk:
            stopped = graphql(server, STOP_BATCH, {"id": batch_id})["stopBatch"]
            if stopped["__typename"] != "BatchSuccess" or stopped["batch"]["queued"]:
                raise BenchmarkFailed(f"stopBatch: {stopped}")
        bulk_seconds = time.perf_counter() - started
        started = time.perf_counter()
        stop_each(server, one_by_one)
        each_seconds = time.perf_counter() - started
    n = batches * 1000
    per_bulk, per_each = bulk_seconds / n * 1000, each_seconds / len(one_by_one) * 1000
    print(f"B1 queued, {backend}: stopBatch of {n:,} executions ({batches} batches)")
    print(f"  stopBatch         {bulk_seconds:8.2f} s in all, {per_bulk:.3f} ms per execution")
    print(
        f"  baseline: stopExecution of each of {len(one_by_one):,}: {each_seconds:.2f} s,"
        f" {per_each:.3f} ms per execution ({per_each / per_bulk:.0f} x stopBatch's)"
    )
    print(f"  target: {n:,} in under 2 s: {'met' if bulk_seconds < 2 else 'NOT met'}")


def running_phase(backend: str, running: int, folder: Path) -> None:
    settings = {
        "RUNWIRE_LOAD_EXAMPLES": "false",
        "RUNWIRE_RUNNER_SLOTS": str(running),
        "RUNWIRE_GRACE_SECONDS": "5",
    }
    with running_server(backend, folder / "running", settings) as server:
        figures = []
        for how in ("stopBatch", "stopExecution of each"):
            batch_id, ids = start_batch(server, SLEEPER, running)
            until(lambda batch_id=batch_id: batch_of(server, batch_id)["running"] == running, 120)
            started = time.perf_counter()
            if how == "stopBatch":
                graphql(server, STOP_BATCH, {"id": batch_id})
            else:
                stop_each(server, ids)
            until(lambda batch_id=batch_id: batch_of(server, batch_id)["progress"] == 1, 120)
            figures.append((how, time.perf_counter() - started))
    print(f"B1 running, {backend}: {running} running `sleep 60` steps, from the stop to all ended")
    for how, seconds in figures:
        print(f"  {how:22} {seconds:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=10, help="of 1,000 queued runs each")
    parser.add_argument("--running", type=int, default=32, help="running executions per batch")
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--quick", action="store_true", help="1 batch, 4 running: a smoke run")
    args = parser.parse_args()
    batches, running = (1, 4) if args.quick else (args.batches, args.running)
    with tempfile.TemporaryDirectory(prefix="runwire-bench-bulk-stop-") as folder:
        queued_phase(args.backend, batches, Path(folder))
        running_phase(args.backend, running, Path(folder))


if __name__ == "__main__":
    main()
