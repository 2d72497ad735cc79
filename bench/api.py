"""P5 + P6: the GraphQL API of a real `runwire serve` on Postgres.

- P5 `startExecution` throughput and latency: several client processes, each with many
  concurrent HTTP/1.1 keep-alive connections (httpx), start executions of a tiny inline
  definition, a fixed count in all. Baselines from the same clients in the same run: the trivial
  query `{ viewer { label } }` on the same server (HTTP + GraphQL + auth, no write), and a bare
  Litestar app on uvicorn answering a constant JSON (HTTP alone).
- P6 one page of 50 of history over N executions seeded in bulk (asyncpg COPY): page 1 and page
  N/100 (10,000 for 1M), unfiltered and `statuses: [FAILED]`, each requested many times in a row
  from a client process. Baseline: the repository's keyset SQL run directly with asyncpg (no
  HTTP, no GraphQL). EXPLAIN (ANALYZE, BUFFERS) of each query shows which index serves it.

The server runs with RUNWIRE_RUNNER=false: started executions stay QUEUED, so the runner's work
(claiming, running steps, writing events) does not blur the API's figure.

- P5b 20 starts launched together (one HTTP/1.1 connection each, already open) on a server with
  its runner on, each round after the previous round's executions ended: what a user starting a
  handful of executions at once waits, while the runner claims and runs them.

Usage: .venv/bin/python bench/api.py [--quick] [--starts N] [--rows N] [--api-processes N]
                                     [--only p5|p5b|p6]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.context import SpawnContext
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx

# Run as a script from anywhere: the repository root holds `tests.support`.
REPO: Final = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import process_cpu_seconds  # noqa: E402 - after the path is set

POSTGRES_SERVER: Final = "postgresql://postgres@127.0.0.1:5432"
PAGE: Final = 50

# P5 sizes (full, quick).
STARTS: Final = 5_000
QUICK_STARTS: Final = 200
PROCESSES: Final = 4
CONNECTIONS: Final = 16  # per process
QUICK_PROCESSES: Final = 2
QUICK_CONNECTIONS: Final = 4
WARMUP_PER_CONNECTION: Final = 3

# P5b sizes (full, quick).
BURST: Final = 20
BURST_ROUNDS: Final = 10
QUICK_BURST_ROUNDS: Final = 3

# P6 sizes (full, quick).
ROWS: Final = 1_000_000
QUICK_ROWS: Final = 20_000
REPEATS: Final = 200
QUICK_REPEATS: Final = 20
PAGE_SECONDS: Final = 60.0
QUICK_PAGE_SECONDS: Final = 5.0
MIN_SAMPLES: Final = 5
PAGE_WARMUP: Final = 3
COPY_CHUNK: Final = 50_000

START = "start"
VIEWER = "viewer"
BARE = "bare"

DEFINITION: Final = "name: bench\nsteps:\n  - {key: hi, kind: shell, with: {argv: [echo, hi]}}\n"
START_MUTATION: Final = """
mutation Start($input: StartExecutionInput!) {
  startExecution(input: $input) {
    __typename
    ... on StartExecutionSuccess { execution { id status } }
    ... on Error { message }
  }
}"""
VIEWER_QUERY: Final = "{ viewer { label } }"
BARE_ANSWER: Final = {"data": {"viewer": {"label": "bare"}}}
PAGE_QUERY: Final = """
query Page($first: Int!, $after: String, $filter: ExecutionFilter) {
  executions(first: $first, after: $after, filter: $filter) {
    edges {
      cursor
      node {
        id name status scenario { name version } labels queuedAt startedAt finishedAt
        durationMs error triggeredBy
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}"""


class BenchmarkFailed(Exception):
    """An answer was wrong or missing: the figure would be meaningless."""


# ---- statistics and printing --------------------------------------------------------------


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    index = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


@dataclass(frozen=True, slots=True)
class Latencies:
    seconds: list[float]

    @property
    def p50_ms(self) -> float:
        return percentile(sorted(self.seconds), 0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(sorted(self.seconds), 0.99) * 1000

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.seconds) * 1000


@dataclass(frozen=True, slots=True)
class LoadResult:
    variant: str
    requests: int
    seconds: float
    latencies: Latencies
    server_cpu_ms: float
    """The server process's CPU time per request (warm-up requests and connection setup too)."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_bound_rate(self) -> float:
        """Requests per second the server could answer with one core to itself."""
        return 1000 / self.server_cpu_ms


@dataclass(frozen=True, slots=True)
class PageCase:
    """One history page: which filter, which cursor, and the ids it must answer with."""

    name: str
    statuses: tuple[str, ...]
    after: tuple[datetime, str] | None
    expected_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Sizes:
    starts: int
    processes: int
    connections: int
    rows: int
    repeats: int
    page_seconds: float
    """Time after which a page stops being repeated (once it has MIN_SAMPLES)."""
    burst_rounds: int = BURST_ROUNDS
    api_processes: int = 1
    """`runwire serve` processes on the one database for P5; client processes take turns."""
    parts: tuple[str, ...] = ("p6", "p5", "p5b")


# ---- P5: load from several processes ---------------------------------------------------------


def load_worker(
    url: str,
    token: str,
    variant: str,
    count: int,
    connections: int,
    barrier: Barrier,
    results: Any,
) -> None:
    """Process entry: warm up, wait for the others, send `count` requests, report."""
    try:
        results.put(("ok", asyncio.run(load(url, token, variant, count, connections, barrier))))
    except BaseException as exc:  # report anything, the parent fails loudly on it
        barrier.abort()
        results.put(("error", f"{variant}: {type(exc).__name__}: {exc}"))


async def load(
    url: str, token: str, variant: str, count: int, connections: int, barrier: Barrier
) -> tuple[float, float, list[float], list[str]]:
    """(first start, last end, latencies, started ids) of `count` requests on `connections`."""
    body = request_body(variant)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    ids: list[str] = []
    latencies: list[float] = []
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60
    ) as client:

        async def one(timed: bool) -> None:
            sent = time.perf_counter()
            response = await client.post("/graphql", content=body)
            elapsed = time.perf_counter() - sent
            found = checked(variant, response)
            if timed:
                latencies.append(elapsed)
                if found is not None:
                    ids.append(found)

        async def connection_loop(quota: list[int], timed: bool) -> None:
            while quota[0] > 0:
                quota[0] -= 1
                await one(timed)

        # Warm-up opens every connection (and lets the server warm its caches), untimed.
        warm = [connections * WARMUP_PER_CONNECTION]
        await asyncio.gather(*(connection_loop(warm, False) for _ in range(connections)))
        await asyncio.to_thread(barrier.wait, 120)
        remaining = [count]
        began = time.monotonic()
        await asyncio.gather(*(connection_loop(remaining, True) for _ in range(connections)))
        ended = time.monotonic()
    return began, ended, latencies, ids


def request_body(variant: str) -> bytes:
    if variant == START:
        variables = {"input": {"definition": DEFINITION, "labels": ["bench"]}}
        return json.dumps({"query": START_MUTATION, "variables": variables}).encode()
    return json.dumps({"query": VIEWER_QUERY}).encode()


def checked(variant: str, response: httpx.Response) -> str | None:
    """Fail on a wrong answer; the started execution's id for `start`."""
    if response.status_code != 200:
        raise BenchmarkFailed(f"HTTP {response.status_code}: {response.text[:300]}")
    answer = response.json()
    if variant == BARE:
        if answer != BARE_ANSWER:
            raise BenchmarkFailed(f"unexpected answer {answer}")
        return None
    if answer.get("errors") or not answer.get("data"):
        raise BenchmarkFailed(f"GraphQL errors: {answer}")
    if variant == VIEWER:
        if not isinstance(answer["data"]["viewer"]["label"], str):
            raise BenchmarkFailed(f"unexpected answer {answer}")
        return None
    started = answer["data"]["startExecution"]
    if started["__typename"] != "StartExecutionSuccess":
        raise BenchmarkFailed(f"start refused: {started}")
    if started["execution"]["status"] != "QUEUED":
        raise BenchmarkFailed(f"started execution not QUEUED: {started}")
    return str(started["execution"]["id"])


def run_load(
    context: SpawnContext,
    urls: Sequence[str],
    token: str,
    variant: str,
    total: int,
    processes: int,
    connections: int,
    server_pids: Sequence[int],
) -> tuple[LoadResult, list[str]]:
    """`total` requests split over `processes` x `connections`, all released at once; client
    process i sends to server i mod len(urls)."""
    cpu_before = sum(process_cpu_seconds(pid) for pid in server_pids)
    barrier = context.Barrier(processes)
    results = context.Queue()
    shares = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
    workers = [
        context.Process(
            target=load_worker,
            args=(urls[i % len(urls)], token, variant, share, connections, barrier, results),
            name=f"bench-{variant}-{i}",
        )
        for i, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    answers: list[Any] = []
    try:
        deadline = time.monotonic() + 180 + total / 20
        for _ in workers:
            answers.append(results.get(timeout=max(1.0, deadline - time.monotonic())))
    except Exception as exc:  # queue.Empty: a worker hung
        raise BenchmarkFailed(f"{variant}: no answer from every client process ({exc!r})") from None
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
                worker.join()
    errors = [detail for status, detail in answers if status != "ok"]
    if errors:
        raise BenchmarkFailed("; ".join(errors))
    began = min(detail[0] for _, detail in answers)
    ended = max(detail[1] for _, detail in answers)
    latencies = [value for _, detail in answers for value in detail[2]]
    ids = [value for _, detail in answers for value in detail[3]]
    if len(latencies) != total:
        raise BenchmarkFailed(f"{variant}: {len(latencies)} answers timed, expected {total}")
    answered = total + processes * connections * WARMUP_PER_CONNECTION
    cpu_ms = (sum(process_cpu_seconds(pid) for pid in server_pids) - cpu_before) * 1000 / answered
    return LoadResult(variant, total, ended - began, Latencies(latencies), cpu_ms), ids


# ---- the bare HTTP baseline ---------------------------------------------------------------


def bare_server(port: int) -> None:
    """Process entry: uvicorn (as `runwire serve` runs it) with one constant-JSON endpoint."""
    import uvicorn
    from litestar import Litestar, post

    @post("/graphql", status_code=200)
    async def constant() -> dict[str, Any]:
        return BARE_ANSWER

    # Same uvicorn settings as `runwire serve` (info level, so access logs too) into /dev/null,
    # as the real server's go to its log file.
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    uvicorn.run(Litestar([constant]), host="127.0.0.1", port=port, log_level="info")


@contextlib.contextmanager
def running_bare_server(context: SpawnContext) -> Iterator[tuple[str, int]]:
    from tests.support.server import free_port

    port = free_port()
    process = context.Process(target=bare_server, args=(port,), name="bench-bare-server")
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.post(f"{url}/graphql", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or not process.is_alive():
                raise BenchmarkFailed("the bare Litestar server did not come up")
            time.sleep(0.1)
        assert process.pid is not None
        yield url, process.pid
    finally:
        process.terminate()
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()


# ---- P6: seeding ------------------------------------------------------------------------------

SCENARIOS: Final = tuple(f"scenario-{i:02d}" for i in range(20))
LABELS: Final = (
    "env:prod", "env:staging", "env:dev", "team:payments", "team:search", "team:growth",
    "nightly", "smoke", "release", "canary", "customer:acme", "customer:globex",
)  # fmt: skip
STATUS_WEIGHTS: Final = {"SUCCEEDED": 82, "FAILED": 10, "CANCELLED": 5, "TIMED_OUT": 3}
EXECUTION_COLUMNS: Final = (
    "id", "workspace_id", "name", "status", "scenario_name", "scenario_version", "definition",
    "inputs", "labels", "priority", "queued_at", "started_at", "finished_at", "error", "last_seq",
    "created_by", "mode", "duration_ms",
)  # fmt: skip


def seed_chunk(
    rng: random.Random, workspace: str, now: datetime, size: int
) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
    """`size` ended executions spread over the last year, and the label rows of about 30%."""
    statuses = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()), k=size)
    executions: list[tuple[Any, ...]] = []
    labels: list[tuple[str, str]] = []
    for status in statuses:
        execution_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        queued_at = now - timedelta(microseconds=rng.randrange(365 * 86_400 * 1_000_000))
        started_at = queued_at + timedelta(milliseconds=rng.randrange(5, 2_000))
        duration_ms = int(rng.lognormvariate(8, 1.5))
        scenario = None if rng.random() < 0.1 else rng.choice(SCENARIOS)
        chosen = rng.sample(LABELS, rng.choice((1, 2))) if rng.random() < 0.3 else []
        labels.extend((execution_id, label) for label in chosen)
        executions.append(
            (
                execution_id,
                workspace,
                scenario or "inline",
                status,
                scenario,
                None if scenario is None else 1,
                DEFINITION_JSON,
                '{"count": 3}',
                json.dumps(chosen),
                0,
                queued_at,
                started_at,
                started_at + timedelta(milliseconds=duration_ms),
                "step s exited with 1" if status == "FAILED" else None,
                rng.randrange(4, 60),
                "token:bench",
                "FULL",
                duration_ms,
            )
        )
    return executions, labels


DEFINITION_JSON: Final = json.dumps(
    {"name": "bench", "steps": [{"key": "hi", "kind": "shell", "with": {"argv": ["echo", "hi"]}}]}
)


async def seed(conn: asyncpg.Connection, workspace: str, rows: int) -> tuple[float, int]:
    """COPY `rows` executions (and their labels) in chunks; (seconds, label rows)."""
    await check_required_columns(conn)
    rng = random.Random(6)
    now = datetime.now(UTC) - timedelta(hours=1)
    label_rows = 0
    started = time.perf_counter()
    for first in range(0, rows, COPY_CHUNK):
        executions, labels = seed_chunk(rng, workspace, now, min(COPY_CHUNK, rows - first))
        async with conn.transaction():
            await conn.copy_records_to_table(
                "runwire_execution", records=executions, columns=EXECUTION_COLUMNS
            )
            await conn.copy_records_to_table(
                "runwire_execution_label", records=labels, columns=("execution_id", "label")
            )
        label_rows += len(labels)
    await conn.execute("ANALYZE runwire_execution")
    await conn.execute("ANALYZE runwire_execution_label")
    return time.perf_counter() - started, label_rows


async def check_required_columns(conn: asyncpg.Connection) -> None:
    """Every NOT NULL column without a default is filled, or the schema moved under the seed."""
    missing = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'runwire_execution'"
        " AND is_nullable = 'NO' AND column_default IS NULL AND NOT (column_name = ANY($1))",
        list(EXECUTION_COLUMNS),
    )
    if missing:
        names = ", ".join(row["column_name"] for row in missing)
        raise BenchmarkFailed(f"seed does not fill required columns: {names}")


# ---- P6: the pages ----------------------------------------------------------------------------


def page_sql(statuses: int, after: bool) -> str:
    """The SQL `Repository.executions` sends for this filter, with the same `$n` parameters.

    After a cursor, the plain `queued_at <= cursor` bound is what lets the index scan start at
    the cursor; the keyset OR then only drops the rows that share its timestamp.
    """
    clauses = ["workspace_id = $1"]
    n = 2
    if statuses:
        clauses.append(f"status IN ({', '.join(f'${n + i}' for i in range(statuses))})")
        n += statuses
    if after:
        clauses.append(f"queued_at <= ${n}")
        clauses.append(f"(queued_at < ${n + 1} OR (queued_at = ${n + 2} AND id < ${n + 3}))")
        n += 4
    return (
        "SELECT * FROM runwire_execution WHERE "
        + " AND ".join(clauses)
        + f" ORDER BY queued_at DESC, id DESC LIMIT ${n}"
    )


def page_args(workspace: str, case: PageCase) -> list[Any]:
    args: list[Any] = [workspace, *case.statuses]
    if case.after is not None:
        args.extend([case.after[0], case.after[0], case.after[0], case.after[1]])
    return [*args, PAGE + 1]


async def page_cases(conn: asyncpg.Connection, workspace: str, rows: int) -> list[PageCase]:
    """Page 1 and page rows/100 (the middle), unfiltered and FAILED only, with expected ids."""
    deep_page = max(2, rows // (2 * PAGE))
    cases: list[PageCase] = []
    for label, statuses in (("", ()), (" FAILED", ("FAILED",))):
        total = await conn.fetchval(
            "SELECT count(*) FROM runwire_execution WHERE workspace_id = $1"
            + (" AND status = $2" if statuses else ""),
            workspace,
            *statuses,
        )
        page = deep_page if not statuses else max(2, total // (2 * PAGE))
        for number in (1, page):
            after = None
            if number > 1:
                # The end cursor of page number-1 is the row just before this page's first one.
                found = await conn.fetchrow(
                    "SELECT queued_at, id FROM runwire_execution WHERE workspace_id = $1"
                    + (" AND status = $2" if statuses else "")
                    + f" ORDER BY queued_at DESC, id DESC OFFSET {PAGE * (number - 1) - 1} LIMIT 1",
                    workspace,
                    *statuses,
                )
                assert found is not None
                after = (found["queued_at"], found["id"])
            ids = await conn.fetch(
                "SELECT id FROM runwire_execution WHERE workspace_id = $1"
                + (" AND status = $2" if statuses else "")
                + f" ORDER BY queued_at DESC, id DESC OFFSET {PAGE * (number - 1)} LIMIT {PAGE}",
                workspace,
                *statuses,
            )
            case = PageCase(f"page {number:,}{label}", statuses, after, tuple(r["id"] for r in ids))
            if len(case.expected_ids) != PAGE:
                raise BenchmarkFailed(f"{case.name}: only {len(case.expected_ids)} rows exist")
            cases.append(case)
    return cases


async def explain(conn: asyncpg.Connection, workspace: str, case: PageCase) -> str:
    """The plan's nodes and indexes, index conditions, filters and timings, in a few lines."""
    sql = page_sql(len(case.statuses), case.after is not None)
    raw = await conn.fetchval(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *page_args(workspace, case)
    )
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    nodes: list[str] = []
    details: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        name = node["Node Type"]
        if "Index Name" in node:
            name += f" using {node['Index Name']}"
        nodes.append(name)
        if "Index Cond" in node:
            details.append(f"index cond {node['Index Cond']}")
        if "Filter" in node:
            removed = node.get("Rows Removed by Filter", 0)
            details.append(f"filter {node['Filter']} (removed {removed:,} rows)")
        if "Index Name" in node:
            details.append(
                f"{node['Actual Rows']} rows, shared hit={node.get('Shared Hit Blocks', 0)}"
                f" read={node.get('Shared Read Blocks', 0)}"
            )
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan["Plan"])
    uses_index = any(" using " in node for node in nodes)
    verdict = "" if uses_index else "  ** NO INDEX **"
    return (
        f"{case.name}: {' > '.join(nodes)}{verdict}\n    "
        + "\n    ".join(details)
        + f"\n    planning {plan['Planning Time']:.3f} ms,"
        + f" execution {plan['Execution Time']:.3f} ms"
    )


def page_worker(
    url: str, token: str, dsn: str, workspace: str, cases: list[PageCase], sizes: Sizes
) -> tuple[str, Any]:
    """Process entry: per case, (GraphQL latencies, asyncpg latencies), requests in a row."""
    # Errors travel as text: this module's classes are `__mp_main__.*` in the worker.
    try:
        return "ok", asyncio.run(time_pages(url, token, dsn, workspace, cases, sizes))
    except Exception as exc:
        return "error", f"{type(exc).__name__}: {exc}"


async def time_pages(
    url: str, token: str, dsn: str, workspace: str, cases: list[PageCase], sizes: Sizes
) -> dict[str, tuple[list[float], list[float]]]:
    found: dict[str, tuple[list[float], list[float]]] = {}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn = await asyncpg.connect(dsn)
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
            for case in cases:
                # Interleaved, so both see the same cache state; bounded by time as well,
                # because a page served by a long scan can take seconds per request.
                graphql: list[float] = []
                direct: list[float] = []
                deadline = time.monotonic() + sizes.page_seconds
                for i in range(PAGE_WARMUP + sizes.repeats):
                    if i >= PAGE_WARMUP + MIN_SAMPLES and time.monotonic() > deadline:
                        break
                    timed = (
                        await graphql_page(client, case),
                        await sql_page(conn, workspace, case),
                    )
                    if i >= PAGE_WARMUP:
                        graphql.append(timed[0])
                        direct.append(timed[1])
                found[case.name] = (graphql, direct)
    finally:
        await conn.close()
    return found


async def graphql_page(client: httpx.AsyncClient, case: PageCase) -> float:
    from runwire.graphql.schema.queries import encode_cursor

    variables: dict[str, Any] = {"first": PAGE}
    if case.after is not None:
        variables["after"] = encode_cursor(*case.after)
    if case.statuses:
        variables["filter"] = {"statuses": list(case.statuses)}
    body = json.dumps({"query": PAGE_QUERY, "variables": variables}).encode()
    sent = time.perf_counter()
    response = await client.post("/graphql", content=body)
    elapsed = time.perf_counter() - sent
    if response.status_code != 200:
        raise BenchmarkFailed(f"{case.name}: HTTP {response.status_code}: {response.text[:300]}")
    answer = response.json()
    if answer.get("errors"):
        raise BenchmarkFailed(f"{case.name}: GraphQL errors: {answer['errors']}")
    page = answer["data"]["executions"]
    ids = tuple(edge["node"]["id"] for edge in page["edges"])
    if ids != case.expected_ids or not page["pageInfo"]["hasNextPage"]:
        raise BenchmarkFailed(f"{case.name}: GraphQL answered other rows than the page holds")
    return elapsed


async def sql_page(conn: asyncpg.Connection, workspace: str, case: PageCase) -> float:
    sql = page_sql(len(case.statuses), case.after is not None)
    sent = time.perf_counter()
    rows = await conn.fetch(sql, *page_args(workspace, case))
    elapsed = time.perf_counter() - sent
    if tuple(row["id"] for row in rows[:PAGE]) != case.expected_ids or len(rows) != PAGE + 1:
        raise BenchmarkFailed(f"{case.name}: the keyset SQL answered other rows than expected")
    return elapsed


# ---- the run ----------------------------------------------------------------------------------


async def prepare_history(dsn: str, rows: int) -> tuple[str, float, int, list[PageCase], list[str]]:
    """Seed and analyse; (workspace, seconds, labels, cases, plan lines)."""
    conn = await asyncpg.connect(dsn)
    try:
        workspace = await conn.fetchval("SELECT id FROM runwire_workspace WHERE name = 'default'")
        if workspace is None:
            raise BenchmarkFailed("the server created no workspace 'default'")
        seconds, labels = await seed(conn, workspace, rows)
        count = await conn.fetchval(
            "SELECT count(*) FROM runwire_execution WHERE workspace_id = $1", workspace
        )
        if count != rows:
            raise BenchmarkFailed(f"seeded {count:,} executions, expected {rows:,}")
        cases = await page_cases(conn, workspace, rows)
        plans = [await explain(conn, workspace, case) for case in cases]
        return workspace, seconds, labels, cases, plans
    finally:
        await conn.close()


async def count_started(dsn: str, ids: list[str]) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM runwire_execution WHERE id = ANY($1::varchar[])"
                " AND status = 'QUEUED'",
                ids,
            )
        )
    finally:
        await conn.close()


def run(sizes: Sizes) -> None:
    from tests.support.server import running_server

    asyncio.run(check_postgres())
    context = multiprocessing.get_context("spawn")
    settings = {"RUNWIRE_RUNNER": "false", "RUNWIRE_LOAD_EXAMPLES": "false"}
    loads: list[LoadResult] = []
    pages: dict[str, tuple[list[float], list[float]]] = {}
    cases: list[PageCase] = []
    plans: list[str] = []
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="runwire-api-")))
        server = stack.enter_context(
            running_server("postgres", directory / "api-0", settings=settings)
        )
        dsn = server.env["RUNWIRE_DATABASE_URL"]
        # More replicas on the same database (and bus) for P5, as docker-compose runs them.
        servers = [server] + [
            stack.enter_context(
                running_server(
                    "postgres", directory / f"api-{i}", settings, database_url=dsn,
                    token=server.token,
                )
            )
            for i in range(1, sizes.api_processes if "p5" in sizes.parts else 1)
        ]  # fmt: skip
        version = asyncio.run(postgres_version(dsn))
        print_header(sizes, version, [s.process.pid for s in servers])
        if "p6" in sizes.parts:
            # P6 first: P5's starts then land in a table that already holds the seeded history.
            workspace, seed_seconds, labels, cases, plans = asyncio.run(
                prepare_history(dsn, sizes.rows)
            )
            print(
                f"seeded {sizes.rows:,} executions (+ {labels:,} label rows) with COPY in"
                f" {seed_seconds:.1f} s ({sizes.rows / seed_seconds:,.0f} rows/s), then ANALYZE"
            )
            print()
            with context.Pool(1) as pool:
                status, found = pool.apply_async(
                    page_worker, (server.url, server.token, dsn, workspace, cases, sizes)
                ).get(timeout=120 + 4 * 3 * sizes.page_seconds)
            if status != "ok":
                raise BenchmarkFailed(f"history pages: {found}")
            pages = found
        if "p5" in sizes.parts:
            urls = [s.url for s in servers]
            pids = [s.process.pid for s in servers]
            for variant in (START, VIEWER):
                result, ids = run_load(
                    context, urls, server.token, variant, sizes.starts, sizes.processes,
                    sizes.connections, pids,
                )  # fmt: skip
                if variant == START:
                    if len(set(ids)) != sizes.starts:
                        raise BenchmarkFailed(
                            f"{len(set(ids)):,} distinct ids for {sizes.starts:,}"
                        )
                    stored = asyncio.run(count_started(dsn, ids))
                    if stored != sizes.starts:
                        raise BenchmarkFailed(f"{stored:,} of {sizes.starts:,} starts are stored")
                loads.append(result)
    if "p5" in sizes.parts:
        with running_bare_server(context) as (bare_url, bare_pid):
            result, _ = run_load(
                context, [bare_url], "unused", BARE, sizes.starts, sizes.processes,
                sizes.connections, [bare_pid],
            )  # fmt: skip
            loads.append(result)
        print_loads(sizes, loads)
        print()
    if "p5b" in sizes.parts:
        print_bursts(sizes, run_bursts(sizes))
        print()
    if "p6" in sizes.parts:
        print_pages(sizes, cases, pages)
        print()
        print("EXPLAIN (ANALYZE, BUFFERS) of the same SQL, custom plans:")
        for plan in plans:
            print(plan)


# ---- P5b: a handful of starts at once, runner on -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Bursts:
    starts: Latencies
    bare: Latencies
    """The same clients' requests to the bare Litestar endpoint, same pattern."""


def run_bursts(sizes: Sizes) -> Bursts:
    """BURST starts at once on a server whose runner runs them, `burst_rounds` times."""
    from tests.support.server import running_server

    context = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="runwire-burst-") as directory,
        running_server(
            "postgres", Path(directory), settings={"RUNWIRE_LOAD_EXAMPLES": "false"}
        ) as server,
    ):
        dsn = server.env["RUNWIRE_DATABASE_URL"]
        starts = asyncio.run(bursts(server.url, server.token, START, sizes.burst_rounds, dsn))
    with running_bare_server(context) as (bare_url, _):
        bare = asyncio.run(bursts(bare_url, "unused", BARE, sizes.burst_rounds, None))
    return Bursts(Latencies(starts), Latencies(bare))


async def bursts(url: str, token: str, variant: str, rounds: int, dsn: str | None) -> list[float]:
    """Latencies of `rounds` x BURST requests, each round sent at once on open connections, the
    next only once the round's executions have ended (when `dsn` is given)."""
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    body = request_body(variant)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60
    ) as client:

        async def one() -> tuple[float, str | None]:
            sent = time.perf_counter()
            response = await client.post("/graphql", content=body)
            elapsed = time.perf_counter() - sent
            return elapsed, checked(variant, response)

        # One untimed round first: opens every connection (and warms the server).
        for timed in [False] + [True] * rounds:
            answers = await asyncio.gather(*(one() for _ in range(BURST)))
            if timed:
                latencies.extend(elapsed for elapsed, _ in answers)
            ids = [found for _, found in answers if found is not None]
            if dsn is not None:
                await until_ended(dsn, ids)
    return latencies


async def until_ended(dsn: str, ids: list[str]) -> None:
    """Wait (bounded) until every execution of `ids` has SUCCEEDED; fail on any other end."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 120
        while True:
            rows = await conn.fetch(
                "SELECT status FROM runwire_execution WHERE id = ANY($1::varchar[])", ids
            )
            statuses = [row["status"] for row in rows]
            if len(statuses) == len(ids) and all(s == "SUCCEEDED" for s in statuses):
                return
            if any(s in ("FAILED", "CANCELLED", "TIMED_OUT") for s in statuses):
                raise BenchmarkFailed(f"a burst's execution ended {sorted(set(statuses))}")
            if time.monotonic() > deadline:
                raise BenchmarkFailed(f"a burst's executions did not end: {statuses}")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def print_bursts(sizes: Sizes, found: Bursts) -> None:
    print(
        f"P5b: {BURST} startExecution at once on {BURST} open connections, runner on (each"
        f" execution runs `echo hi`), {sizes.burst_rounds} rounds after 1 untimed, each once the"
        " previous round's executions ended"
    )
    print(f"{'variant':<28} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in (("startExecution", found.starts), ("bare Litestar", found.bare)):
        print(
            f"{name:<28} {len(values.seconds):>9} {values.p50_ms:>8.1f} {values.p99_ms:>8.1f}"
            f" {max(values.seconds) * 1000:>8.1f}"
        )
    print(f"(p50 x bare: {found.starts.p50_ms / found.bare.p50_ms:.2f})")


async def postgres_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def check_postgres() -> None:
    try:
        conn = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres", timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise SystemExit(
            f"Postgres is unreachable at {POSTGRES_SERVER}: {type(exc).__name__}: {exc}"
        ) from None
    await conn.close()


def print_header(sizes: Sizes, postgres_version: str, server_pids: Sequence[int]) -> None:
    print("P5 startExecution throughput + latency; P6 history page of 50")
    print(f"date:     {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"machine:  {os.cpu_count()} cores, {platform.platform()}")
    print(f"python:   {platform.python_version()} ({platform.python_implementation()})")
    print(f"postgres: {postgres_version} on 127.0.0.1")
    print(f"command:  {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"server:   runwire serve x {len(server_pids)} (pids {', '.join(map(str, server_pids))}),"
        " one uvicorn process each, one Postgres database, RUNWIRE_RUNNER=false"
    )
    print()


def print_loads(sizes: Sizes, loads: list[LoadResult]) -> None:
    concurrency = sizes.processes * sizes.connections
    print(
        f"P5: {sizes.starts:,} requests per variant from {sizes.processes} processes x"
        f" {sizes.connections} keep-alive connections ({concurrency} in flight),"
        f" after {WARMUP_PER_CONNECTION} untimed requests per connection;"
        f" {sizes.api_processes} runwire serve process(es), client process i to server i mod"
        f" {sizes.api_processes} (server CPU: all of them)"
    )
    bare = next(r for r in loads if r.variant == BARE)
    print(
        f"{'variant':<28} {'requests':>9} {'seconds':>8} {'req/s':>8} {'p50 ms':>8}"
        f" {'p99 ms':>8} {'x bare':>7} {'server CPU ms':>14} {'1-core req/s':>13}"
    )
    names = {
        START: "startExecution",
        VIEWER: "query { viewer { label } }",
        BARE: "bare Litestar constant JSON",
    }
    for r in loads:
        print(
            f"{names[r.variant]:<28} {r.requests:>9,} {r.seconds:>8.2f} {r.rate:>8,.0f}"
            f" {r.latencies.p50_ms:>8.1f} {r.latencies.p99_ms:>8.1f} {r.rate / bare.rate:>7.3f}"
            f" {r.server_cpu_ms:>14.2f} {r.cpu_bound_rate:>13,.0f}"
        )
    print(
        "(server CPU ms = the server process's CPU time per request, warm-up included;"
        " 1-core req/s = 1000 / that: the most one server process could answer with a core"
        " to itself, whatever the clients take)"
    )
    print("targets: startExecution >= 1,000 starts/s and p99 <= 50 ms (reported, not asserted)")


def print_pages(
    sizes: Sizes,
    cases: list[PageCase],
    pages: dict[str, tuple[list[float], list[float]]],
) -> None:
    print(
        f"P6: {sizes.rows:,} executions in one workspace; each page of {PAGE} requested"
        f" {sizes.repeats} times (or for {sizes.page_seconds:.0f} s, at least {MIN_SAMPLES}) after"
        f" {PAGE_WARMUP} untimed, from one client process, GraphQL and SQL interleaved"
    )
    print(
        f"{'page':<22} {'n':>4} {'GraphQL p50':>12} {'p99':>8} {'asyncpg p50':>12} {'p99':>8}"
        f" {'x asyncpg':>10}"
    )
    for case in cases:
        graphql, direct = (Latencies(values) for values in pages[case.name])
        print(
            f"{case.name:<22} {len(graphql.seconds):>4} {graphql.p50_ms:>12.2f}"
            f" {graphql.p99_ms:>8.2f} {direct.p50_ms:>12.2f} {direct.p99_ms:>8.2f}"
            f" {graphql.p50_ms / direct.p50_ms:>10.1f}"
        )
    print(
        "(ms; GraphQL = the server over HTTP; asyncpg = the repository's SQL run directly;"
        " x asyncpg = GraphQL p50 / asyncpg p50;"
        " target: GraphQL p50 <= 10 ms on both pages)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--starts", type=int, help=f"P5 requests per variant ({STARTS:,})")
    parser.add_argument("--rows", type=int, help=f"P6 seeded executions ({ROWS:,})")
    parser.add_argument(
        "--api-processes", type=int, default=1, help="`runwire serve` processes for P5 (1)"
    )
    parser.add_argument(
        "--only", action="append", choices=("p5", "p5b", "p6"), help="run only these (repeatable)"
    )
    args = parser.parse_args()
    sizes = (
        Sizes(
            QUICK_STARTS, QUICK_PROCESSES, QUICK_CONNECTIONS, QUICK_ROWS, QUICK_REPEATS,
            QUICK_PAGE_SECONDS, QUICK_BURST_ROUNDS,
        )
        if args.quick
        else Sizes(STARTS, PROCESSES, CONNECTIONS, ROWS, REPEATS, PAGE_SECONDS)
    )  # fmt: skip
    if args.starts is not None:
        sizes = dataclasses.replace(sizes, starts=args.starts)
    if args.rows is not None:
        sizes = dataclasses.replace(sizes, rows=args.rows)
    if sizes.starts < sizes.processes or sizes.rows < 4 * PAGE * 10:
        parser.error(f"need --starts >= {sizes.processes} and --rows >= {4 * PAGE * 10}")
    if not 1 <= args.api_processes <= sizes.processes:
        parser.error(f"need 1 <= --api-processes <= {sizes.processes} (the client processes)")
    sizes = dataclasses.replace(sizes, api_processes=args.api_processes)
    if args.only:
        sizes = dataclasses.replace(sizes, parts=tuple(args.only))
    try:
        run(sizes)
    except BenchmarkFailed as exc:
        sys.exit(f"BENCHMARK FAILED: {exc}")


if __name__ == "__main__":
    main()
