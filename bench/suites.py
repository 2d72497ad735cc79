"""S1 a suite of 1,000 cases x 3 repeats on one server: queueing, the last result, comparison.

One `runwire serve` (Postgres by default; runner slots as set, default 8) and a saved scenario
of one trivial step (`sleep` 0 s: no process, so the figures are Runwire's, not fork's). A suite
of N cases (rows of that scenario, each case its own input `n`) runs `repeat` times, twice, and
its two runs are compared.

Figures, each next to its baseline from the same run:
- time to queue: `startSuiteRun` (validate every case, store N x repeat executions in one
  transaction), next to `startBatch` of the same executions (what a suite run is built on; a
  batch holds at most 1,000 runs, so one after another as many as it takes);
- time to the last result: from the start until the run's batch has ended (then
  `suiteRun.complete` is checked), next to the baseline batches ending (polled alike, every
  100 ms);
- `compareSuiteRuns(head, base)` latency (median and max of 20), next to reading the head run's
  per-case results alone (`suiteRun(id) { cases {…} }`, which a comparison does for both sides).
Target (issue 18): compareSuiteRuns under 200 ms for 1,000 cases x 3 repeats.

Usage: .venv/bin/python bench/suites.py [--cases N] [--repeat R] [--backend sqlite] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run from the repository root or from bench/: the test support package lives at the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BenchmarkFailed, graphql
from tests.support.server import Server, running_server

SCENARIO = {
    "name": "bench-trivial",
    "inputs": {"n": {"type": "integer", "default": 0}},
    "steps": [{"key": "nap", "kind": "sleep", "with": {"seconds": 0}}],
}
CREATE_SCENARIO = """
mutation($definition: String!) { createScenario(definition: $definition) { __typename } }
"""
CREATE_SUITE = """
mutation($definition: String!) {
  createSuite(definition: $definition) {
    __typename
    ... on ValidationError { fieldErrors { path message } }
  }
}
"""
START_SUITE_RUN = """
mutation($input: StartSuiteRunInput!) {
  startSuiteRun(input: $input) {
    __typename
    ... on SuiteRunSuccess { run { id total batchId } }
    ... on Error { message }
  }
}
"""
START_BATCH = """
mutation($input: StartBatchInput!) {
  startBatch(input: $input) {
    __typename
    ... on BatchSuccess { batch { id } }
    ... on Error { message }
  }
}
"""
SUITE_RUN_PROGRESS = "query($id: ID!) { suiteRun(id: $id) { complete ended total passRate } }"
SUITE_RUN_CASES = """
query($id: ID!) {
  suiteRun(id: $id) { cases { name status passRate durationP50Ms } }
}
"""
BATCH_PROGRESS = "query($id: ID!) { batch(id: $id) { progress succeeded total } }"
COMPARE = """
query($head: ID!, $base: ID) {
  compareSuiteRuns(head: $head, base: $base) {
    __typename
    ... on SuiteComparison { verdict unchangedPassCases cases { name change } }
    ... on Error { message }
  }
}
"""


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def until(done: Callable[[], bool], timeout: float) -> float:
    """Seconds until `done()` holds, polled every 100 ms."""
    started = time.perf_counter()
    while not done():
        if time.perf_counter() - started > timeout:
            raise BenchmarkFailed(f"not done within {timeout:.0f} s")
        time.sleep(0.1)
    return time.perf_counter() - started


def suite_run(server: Server, cases: int, repeat: int) -> tuple[str, float, float]:
    started = time.perf_counter()
    queued, result = timed(
        lambda: graphql(
            server,
            START_SUITE_RUN,
            {"input": {"suite": "bench-suite", "repeat": repeat, "concurrency": 1000}},
        )
    )
    payload = result["startSuiteRun"]
    if payload["__typename"] != "SuiteRunSuccess":
        raise BenchmarkFailed(f"startSuiteRun: {payload}")
    run_id, batch_id = payload["run"]["id"], payload["run"]["batchId"]
    # Polled through its batch, as the baseline is: reading the whole run's per-case results
    # ten times a second would load the server it measures.
    until(lambda: batch_ended(server, batch_id), timeout=1800)
    found = graphql(server, SUITE_RUN_PROGRESS, {"id": run_id})["suiteRun"]
    if not found["complete"] or found["passRate"] != 1.0:
        raise BenchmarkFailed(f"suite run {run_id} did not pass: {found}")
    return run_id, queued, time.perf_counter() - started


def batch_ended(server: Server, batch_id: str) -> bool:
    found = graphql(server, BATCH_PROGRESS, {"id": batch_id})["batch"]
    if found["progress"] == 1 and found["succeeded"] != found["total"]:
        raise BenchmarkFailed(f"batch {batch_id} did not succeed: {found}")
    return bool(found["progress"] == 1)


def batch_run(server: Server, cases: int, repeat: int) -> tuple[float, float]:
    """The same executions as batches (at most 1,000 runs each, so as many as it takes)."""
    runs = [{"inputs": {"n": n}} for n in range(cases) for _ in range(repeat)]
    started = time.perf_counter()
    batch_ids, queued = [], 0.0
    for first in range(0, len(runs), 1000):
        seconds, result = timed(
            lambda first=first: graphql(
                server,
                START_BATCH,
                {
                    "input": {
                        "scenario": "bench-trivial",
                        "runs": runs[first : first + 1000],
                        "concurrency": 1000,
                    }
                },
            )
        )
        payload = result["startBatch"]
        if payload["__typename"] != "BatchSuccess":
            raise BenchmarkFailed(f"startBatch: {payload}")
        batch_ids.append(payload["batch"]["id"])
        queued += seconds

    until(lambda: all(batch_ended(server, batch_id) for batch_id in batch_ids), timeout=1800)
    return queued, time.perf_counter() - started


def latencies(action: Callable[[], Any], times: int = 20) -> list[float]:
    action()  # warm: the first read fills caches on both sides alike
    return [timed(action)[0] * 1000 for _ in range(times)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--quick", action="store_true", help="50 cases x 2: a smoke run")
    args = parser.parse_args()
    cases, repeat = (50, 2) if args.quick else (args.cases, args.repeat)
    suite = {
        "name": "bench-suite",
        "cases": [
            {"name": "c", "scenario": "bench-trivial", "rows": [{"n": n} for n in range(cases)]}
        ],
    }
    with tempfile.TemporaryDirectory(prefix="runwire-bench-suites-") as folder:
        settings = {"RUNWIRE_LOAD_EXAMPLES": "false"}
        with running_server(args.backend, Path(folder), settings) as server:
            created = graphql(server, CREATE_SCENARIO, {"definition": json.dumps(SCENARIO)})
            if created["createScenario"]["__typename"] != "ScenarioSuccess":
                raise BenchmarkFailed(f"createScenario: {created}")
            saved = graphql(server, CREATE_SUITE, {"definition": json.dumps(suite)})
            if saved["createSuite"]["__typename"] != "SuiteSuccess":
                raise BenchmarkFailed(f"createSuite: {saved}")
            # The baseline between the two suite runs: each side once on a table grown by 3,000
            # executions (later runs read and claim among more rows).
            base, base_queued, base_done = suite_run(server, cases, repeat)
            batch_queued, batch_done = batch_run(server, cases, repeat)
            head, head_queued, head_done = suite_run(server, cases, repeat)

            def compare() -> None:
                found = graphql(server, COMPARE, {"head": head, "base": base})
                comparison = found["compareSuiteRuns"]
                if comparison.get("unchangedPassCases") != cases:
                    raise BenchmarkFailed(f"compareSuiteRuns: {comparison.get('verdict')}")

            compared = latencies(compare)
            read = latencies(lambda: graphql(server, SUITE_RUN_CASES, {"id": head}))
    executions = cases * repeat
    print(
        f"\nS1 — a suite of {cases} cases x {repeat} repeats ({executions} executions of one"
        f" `sleep 0` step) on one server ({args.backend}, 8 runner slots)"
    )
    print(f"{'':28} {'suite run 1':>12} {'suite run 2':>12} {'batch (baseline)':>17}")
    for label, figures in (
        ("time to queue, s", (base_queued, head_queued, batch_queued)),
        ("time to the last result, s", (base_done, head_done, batch_done)),
    ):
        print(f"{label:28} {figures[0]:>12.2f} {figures[1]:>12.2f} {figures[2]:>17.2f}")
    print(
        f"compareSuiteRuns (run 2 against run 1): median {statistics.median(compared):.0f} ms,"
        f" max {max(compared):.0f} ms (target < 200 ms);"
        f" reading run 2's cases alone (baseline): median {statistics.median(read):.0f} ms,"
        f" x {statistics.median(compared) / statistics.median(read):.2f}"
    )


if __name__ == "__main__":
    main()
