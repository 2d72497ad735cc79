"""P4 + P7: what one server process holds, and the memory each held thing costs.

- P4 idle subscriptions: a real `runwire serve` on Postgres runs a few executions parked in a
  long `sleep` step; client processes open K graphql-transport-ws connections, one
  `executionEvents` subscription each, and hold them idle. Server RSS (VmRSS) before and after
  gives KB per subscription. At the end /health must count K followers and stopping one of the
  executions must reach every subscription to it. Baseline: a bare `websockets` server process
  holding K idle connections (same clients, same connection_init/ack handshake). Clients offer
  permessage-deflate; each pair runs with servers that refuse it (Runwire's default) and accept it.
- P7 running executions: the same kind of server with RUNWIRE_RUNNER_SLOTS=M starts M
  executions of a single long `sleep` step (startBatch, 1000 runs a batch) and holds them all
  RUNNING; RSS before and after gives KB per execution. Then stopBatch must cancel them all.
  Baseline: a bare asyncio process holding M `asyncio.sleep` tasks.

Usage: .venv/bin/python bench/capacity.py [--quick] [--subscriptions K] [--executions M]
                                          [--only p4|p7] [--deflate on|off|both] [--server URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import httpx
import websockets

POSTGRES_SERVER: Final = "postgresql://postgres@127.0.0.1:5432"
REPO: Final = Path(__file__).resolve().parents[1]
FULL_SUBSCRIPTIONS: Final = 10_000
FULL_EXECUTIONS: Final = 10_000
QUICK_SUBSCRIPTIONS: Final = 200
QUICK_EXECUTIONS: Final = 50
SUBSCRIBED_EXECUTIONS: Final = 10  # P4: the subscriptions are spread over this many executions
CONNECTIONS_PER_CLIENT: Final = 2_500  # P4: one client process per this many connections
CONNECTING_AT_ONCE: Final = 32  # P4: in-flight connection handshakes per client process
BATCH_RUNS: Final = 1_000  # P7: runwire.domain.batches.MAX_RUNS (and MAX_CONCURRENCY)
PARKED_SECONDS: Final = 3_600  # the sleep step outlives any measurement; the bench stops it
SETTLE_SECONDS: Final = 2.0  # let the server finish in-flight work before reading its RSS
QUICK_SETTLE_SECONDS: Final = 0.5
SUBPROTOCOL: Final = "graphql-transport-ws"
TERMINAL: Final = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"})

SLEEP_DEFINITION: Final = json.dumps(
    {
        "name": "bench-parked",
        "steps": [{"key": "nap", "kind": "sleep", "with": {"seconds": PARKED_SECONDS}}],
    }
)
WARMUP_DEFINITION: Final = json.dumps(
    {"name": "bench-warmup", "steps": [{"key": "nap", "kind": "sleep", "with": {"seconds": 0.2}}]}
)
EVENTS_SUBSCRIPTION: Final = (
    "subscription ($id: ID!) { executionEvents(executionId: $id) {"
    " lastSeq events { seq type ... on ExecutionStatusChanged { executionStatus } } } }"
)
START_EXECUTION: Final = (
    "mutation ($input: StartExecutionInput!) { startExecution(input: $input) {"
    " __typename ... on StartExecutionSuccess { execution { id } } ... on Error { message } } }"
)
STOP_EXECUTION: Final = (
    "mutation ($id: ID!) { stopExecution(id: $id) { __typename ... on Error { message } } }"
)
START_BATCH: Final = (
    "mutation ($input: StartBatchInput!) { startBatch(input: $input) {"
    " __typename ... on BatchSuccess { batch { id } } ... on Error { message } } }"
)
STOP_BATCH: Final = (
    "mutation ($id: ID!) { stopBatch(id: $id) { __typename ... on Error { message } } }"
)
BATCH_COUNTS: Final = "query ($id: ID!) { batch(id: $id) { total running queued cancelled } }"
QUEUE: Final = "{ queue { queued running slots } }"


class BenchmarkFailed(Exception):
    """Something held was not really held (lost, closed, or never running): no figure."""


@dataclass(frozen=True, slots=True)
class Held:
    """One measured holder: how many things it held and its RSS (KiB) before and after."""

    variant: str
    count: int
    rss_before_kb: int
    rss_after_kb: int
    setup_seconds: float

    @property
    def kb_each(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / self.count


# ---- process facts ----------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchmarkFailed(f"no VmRSS for process {pid}")


def open_files_limit(pid: int) -> str:
    """The soft/hard 'Max open files' of a running process."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"{soft}/{hard}"
    return "unknown"


def raise_open_files_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `needed` (never past the hard limit); the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


# ---- GraphQL over HTTP ------------------------------------------------------------------------


class Api:
    """The bench's own HTTP GraphQL client: queries and mutations, errors are failures."""

    def __init__(self, url: str, token: str) -> None:
        self._client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def close(self) -> None:
        self._client.close()

    def call(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._client.post("/graphql", json={"query": query, "variables": variables})
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise BenchmarkFailed(f"GraphQL {response.status_code}: {body}")
        data: dict[str, Any] = body["data"]
        return data

    def succeed(self, query: str, variables: dict[str, Any], field: str, ok: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call(query, variables)[field]
        if result["__typename"] != ok:
            raise BenchmarkFailed(f"{field}: {result}")
        return result

    def queue(self) -> dict[str, int]:
        counts: dict[str, int] = self.call(QUEUE)["queue"]
        return counts

    def followers(self) -> int:
        return int(self._client.get("/health").json()["followers"])


def wait_for(what: str, check: Any, seconds: float, interval: float = 0.25) -> float:
    """Poll `check()` until true; the seconds it took, or a failure naming `what`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise BenchmarkFailed(f"{what}: not reached within {seconds:.0f} s")
        time.sleep(interval)
    return time.monotonic() - started


@contextlib.contextmanager
def runwire_server(server: str, settings: dict[str, str]) -> Iterator[Any]:
    """A real `runwire serve` on a fresh Postgres database (tests/support/server.py)."""
    # The bench runs from the repository root's checkout, not as an installed package.
    sys.path.insert(0, str(REPO))
    from tests.support import postgres
    from tests.support.server import running_server

    postgres.POSTGRES_SERVER = server
    with (
        tempfile.TemporaryDirectory(prefix="runwire-capacity-") as directory,
        running_server(
            "postgres", Path(directory), settings={"RUNWIRE_LOAD_EXAMPLES": "false", **settings}
        ) as running,
    ):
        yield running


def check_postgres(server: str) -> str:
    """The server version, or exit with a clear message when Postgres is unreachable."""
    import asyncpg

    async def version() -> str:
        connection = await asyncpg.connect(f"{server}/postgres", timeout=3)
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    try:
        return asyncio.run(version())
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise SystemExit(
            f"Postgres is unreachable at {server}: {type(exc).__name__}: {exc}"
        ) from None


# ---- P4 clients: separate processes holding idle connections -----------------------------------


@dataclass(frozen=True, slots=True)
class ClientPlan:
    """What one client process opens: one connection per entry, subscribed to that execution."""

    url: str
    token: str
    executions: list[str | None]  # None: connection_init/ack only (the bare baseline)
    # Whether the server is expected to accept the permessage-deflate every client offers (as
    # browsers and `websockets` do by default); a socket that disagrees fails the run.
    deflate: bool


def client_process(plan: ClientPlan, pipe: Connection) -> None:
    """Entry point of a client process: hold connections, answer the parent's commands."""
    raise_open_files_limit(len(plan.executions) + 256)
    try:
        asyncio.run(hold_connections(plan, pipe))
    except BaseException as exc:  # the parent must hear why, whatever it was
        with contextlib.suppress(OSError):
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


async def hold_connections(plan: ClientPlan, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def open_one(execution_id: str | None) -> Any:
        async with gate:
            socket = await websockets.connect(
                plan.url,
                subprotocols=[SUBPROTOCOL],
                open_timeout=120,
                max_size=2**20,
                compression="deflate",
            )
            if bool(socket.protocol.extensions) != plan.deflate:
                raise BenchmarkFailed(
                    f"permessage-deflate {'refused' if plan.deflate else 'negotiated'}"
                    f" (extensions: {socket.protocol.extensions})"
                )
            await socket.send(
                json.dumps(
                    {
                        "type": "connection_init",
                        "payload": {"Authorization": f"Bearer {plan.token}"},
                    }
                )
            )
            ack = json.loads(await asyncio.wait_for(socket.recv(), 120))
            if ack.get("type") != "connection_ack":
                raise BenchmarkFailed(f"expected connection_ack, got {ack}")
            if execution_id is not None:
                subscribe = {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": EVENTS_SUBSCRIPTION, "variables": {"id": execution_id}},
                }
                await socket.send(json.dumps(subscribe))
                # The backlog (QUEUED, RUNNING, ...) arrives first: the subscription is live.
                first = json.loads(await asyncio.wait_for(socket.recv(), 120))
                data = first.get("payload", {}).get("data") if first.get("type") == "next" else None
                if not (data or {}).get("executionEvents"):  # errors print whole, below
                    raise BenchmarkFailed(f"expected the backlog, got {first}")
            return socket

    sockets = await asyncio.gather(*(open_one(e) for e in plan.executions))
    pipe.send(("ready", len(sockets)))
    while True:
        command, argument = await loop.run_in_executor(None, pipe.recv)
        if command == "check":
            # Every subscription to the stopped execution gets its terminal status, then complete.
            chosen = [s for s, e in zip(sockets, plan.executions, strict=True) if e == argument]
            reached = await asyncio.gather(*(saw_terminal(s) for s in chosen))
            pipe.send(("checked", (len(chosen), sum(reached))))
        elif command == "close":
            await asyncio.gather(*(s.close() for s in sockets))
            pipe.send(("closed", len(sockets)))
            return


async def saw_terminal(socket: Any, seconds: float = 120) -> bool:
    """Read until `complete`; True if a terminal execution status came before it."""
    status = None
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = json.loads(await socket.recv())
                if message["type"] == "complete":
                    return status in TERMINAL
                if message["type"] != "next":
                    return False
                for event in message["payload"]["data"]["executionEvents"]["events"]:
                    status = event.get("executionStatus") or status
    except (TimeoutError, websockets.ConnectionClosed):
        return False


class Clients:
    """Client processes, each holding its share of connections, driven over pipes."""

    def __init__(self, url: str, token: str, executions: list[str | None], deflate: bool) -> None:
        processes = max(1, math.ceil(len(executions) / CONNECTIONS_PER_CLIENT))
        context = multiprocessing.get_context("spawn")
        self._children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        for index in range(processes):
            share = executions[index::processes]
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=client_process,
                args=(ClientPlan(url, token, share, deflate), child_end),
                name=f"capacity-client-{index}",
            )
            process.start()
            child_end.close()
            self._children.append((process, parent_end))

    def _gather(self, expected: str, seconds: float) -> list[Any]:
        answers = []
        deadline = time.monotonic() + seconds
        for process, pipe in self._children:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise BenchmarkFailed(f"{process.name}: no '{expected}' within {seconds:.0f} s")
            try:
                kind, value = pipe.recv()
            except EOFError:
                process.join(5)
                raise BenchmarkFailed(
                    f"{process.name} exited (code {process.exitcode}) before '{expected}'"
                ) from None
            if kind != expected:
                raise BenchmarkFailed(f"{process.name}: {kind}: {value}")
            answers.append(value)
        return answers

    def ready(self, seconds: float) -> int:
        return sum(self._gather("ready", seconds))

    def check(self, execution_id: str, seconds: float) -> tuple[int, int]:
        for _, pipe in self._children:
            pipe.send(("check", execution_id))
        answers = self._gather("checked", seconds)
        return sum(a[0] for a in answers), sum(a[1] for a in answers)

    def close(self, seconds: float) -> None:
        for _, pipe in self._children:
            with contextlib.suppress(OSError):
                pipe.send(("close", None))
        with contextlib.suppress(BenchmarkFailed, EOFError, OSError):
            self._gather("closed", seconds)
        for process, pipe in self._children:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
            pipe.close()


# ---- P4 baseline: a bare websockets server ----------------------------------------------------


def bare_websockets_server(deflate: bool, pipe: Connection) -> None:
    """Entry point of the baseline process: accept, ack connection_init, hold until told."""
    raise_open_files_limit(65_536)

    async def handle(socket: Any) -> None:
        async for message in socket:
            if json.loads(message).get("type") == "connection_init":
                await socket.send('{"type":"connection_ack"}')

    async def serve() -> None:
        from websockets.asyncio.server import serve

        async with serve(
            handle,
            "127.0.0.1",
            0,
            subprotocols=[SUBPROTOCOL],
            compression="deflate" if deflate else None,
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            pipe.send(("listening", port))
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)

    asyncio.run(serve())


def measure_bare_websockets(
    connections: int, deadline: float, settle: float, deflate: bool
) -> Held:
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=bare_websockets_server, args=(deflate, child_end))
    process.start()
    child_end.close()
    try:
        if not parent_end.poll(30):
            raise BenchmarkFailed("the bare websockets server did not start")
        _, port = parent_end.recv()
        url = f"ws://127.0.0.1:{port}/"
        warm_up(url, "-", None, deflate)
        time.sleep(settle)
        before = rss_kb(process.pid or 0)
        started = time.monotonic()
        clients = Clients(url, "-", [None] * connections, deflate)
        try:
            held = clients.ready(deadline)
            setup = time.monotonic() - started
            if held != connections:
                raise BenchmarkFailed(f"bare websockets: {held} of {connections} connections held")
            time.sleep(settle)
            after = rss_kb(process.pid or 0)
        finally:
            clients.close(60)
        return Held(f"bare websockets{suffix(deflate)}", connections, before, after, setup)
    finally:
        with contextlib.suppress(OSError):
            parent_end.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()


def suffix(deflate: bool) -> str:
    return ", deflate" if deflate else ", no deflate"


def warm_up(url: str, token: str, execution_id: str | None, deflate: bool) -> None:
    """One connection (and subscription) opened and closed, so the first one's imports and
    caches are not counted as the per-connection cost."""
    clients = Clients(url, token, [execution_id], deflate)
    try:
        if clients.ready(60) != 1:
            raise BenchmarkFailed("the warm-up connection failed")
    finally:
        clients.close(30)


# ---- P4: Runwire ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class P4Result:
    held: Held
    followers: int
    sample_expected: int
    sample_reached: int
    sample_seconds: float
    followers_after_close: int
    open_files: str


def measure_runwire_subscriptions(
    server_url: str, subscriptions: int, deadline: float, settle: float, deflate: bool
) -> P4Result:
    executions = min(SUBSCRIBED_EXECUTIONS, subscriptions)
    settings = {"RUNWIRE_RUNNER_SLOTS": str(executions + 2)}
    if deflate:
        settings["RUNWIRE_WS_DEFLATE"] = "true"
    with runwire_server(server_url, settings) as server:
        api = Api(server.url, server.token)
        try:
            ids = [
                api.succeed(
                    START_EXECUTION,
                    {"input": {"definition": SLEEP_DEFINITION}},
                    "startExecution",
                    "StartExecutionSuccess",
                )["execution"]["id"]
                for _ in range(executions)
            ]
            wait_for("P4 executions RUNNING", lambda: api.queue()["running"] == executions, 60)
            warm_up(server.graphql_ws, server.token, ids[0], deflate)
            wait_for("warm-up follower gone", lambda: api.followers() == 0, 30)
            time.sleep(settle)
            before = rss_kb(server.process.pid)
            assignments: list[str | None] = [ids[i % executions] for i in range(subscriptions)]
            started = time.monotonic()
            clients = Clients(server.graphql_ws, server.token, assignments, deflate)
            try:
                held = clients.ready(deadline)
                setup = time.monotonic() - started
                if held != subscriptions:
                    raise BenchmarkFailed(f"runwire: {held} of {subscriptions} subscriptions held")
                followers = api.followers()
                if followers != subscriptions:
                    raise BenchmarkFailed(f"/health counts {followers} followers, not {held}")
                time.sleep(settle)
                after = rss_kb(server.process.pid)
                # Liveness: an event still reaches every subscription to one execution.
                sample = ids[-1]
                stopping = time.monotonic()
                api.succeed(STOP_EXECUTION, {"id": sample}, "stopExecution", "StopExecutionSuccess")
                expected, reached = clients.check(sample, 180)
                sample_seconds = time.monotonic() - stopping
                if expected == 0 or reached != expected:
                    raise BenchmarkFailed(
                        f"stopping {sample} reached {reached} of its {expected} subscriptions"
                    )
            finally:
                clients.close(120)
            wait_for("followers gone after close", lambda: api.followers() == 0, 60)
            return P4Result(
                Held(f"runwire{suffix(deflate)}", subscriptions, before, after, setup),
                followers,
                expected,
                reached,
                sample_seconds,
                api.followers(),
                open_files_limit(server.process.pid),
            )
        finally:
            api.close()


# ---- P7 baseline: a bare asyncio process holding sleep tasks ----------------------------------


def bare_sleep_tasks(count: int, settle: float, pipe: Connection) -> None:
    """Entry point of the baseline process: RSS before and after starting `count` sleep tasks."""

    async def step() -> None:
        await asyncio.sleep(PARKED_SECONDS)

    async def hold() -> None:
        await asyncio.sleep(0.1)
        before = rss_kb(os.getpid())
        started = time.monotonic()
        tasks = [asyncio.create_task(step()) for _ in range(count)]
        await asyncio.sleep(0.1)  # every task has started and is parked in its sleep
        setup = time.monotonic() - started
        await asyncio.sleep(settle)
        pipe.send((before, rss_kb(os.getpid()), setup))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(hold())


def measure_bare_sleep_tasks(count: int, settle: float) -> Held:
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=bare_sleep_tasks, args=(count, settle, child_end))
    process.start()
    child_end.close()
    try:
        if not parent_end.poll(120):
            raise BenchmarkFailed("the bare asyncio baseline did not report")
        before, after, setup = parent_end.recv()
        return Held("bare asyncio", count, before, after, setup)
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()


# ---- P7: Runwire ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class P7Result:
    held: Held
    queued_seconds: float
    stop_seconds: float
    cancelled: int


def measure_runwire_executions(
    server_url: str, executions: int, deadline: float, settle: float
) -> P7Result:
    settings = {"RUNWIRE_RUNNER_SLOTS": str(executions)}
    with runwire_server(server_url, settings) as server:
        api = Api(server.url, server.token)
        try:
            # Warm-up: a few short executions run to the end, so code paths are loaded.
            warm = start_batch(api, WARMUP_DEFINITION, 5)
            wait_for("warm-up batch", lambda: batch_counts(api, warm)["running"] == 0, 60)
            wait_for("warm-up queue empty", lambda: api.queue() == queue_of(0, 0, executions), 60)
            time.sleep(settle)
            before = rss_kb(server.process.pid)
            started = time.monotonic()
            batches = [
                start_batch(api, SLEEP_DEFINITION, min(BATCH_RUNS, executions - first))
                for first in range(0, executions, BATCH_RUNS)
            ]
            queued_seconds = time.monotonic() - started
            progress: list[dict[str, int]] = []

            def all_running() -> bool:
                progress.append(api.queue())
                return progress[-1]["running"] == executions

            try:
                wait_for("P7 executions RUNNING", all_running, deadline, interval=0.5)
            except BenchmarkFailed:
                raise BenchmarkFailed(
                    f"{progress[-1]['running']:,} of {executions:,} RUNNING"
                    f" ({progress[-1]['queued']:,} queued) after {deadline:.0f} s"
                ) from None
            setup = time.monotonic() - started
            time.sleep(settle)
            after = rss_kb(server.process.pid)
            if api.queue()["running"] != executions:
                raise BenchmarkFailed("executions ended while being measured")
            stopping = time.monotonic()
            for batch_id in batches:
                api.succeed(STOP_BATCH, {"id": batch_id}, "stopBatch", "BatchSuccess")
            wait_for(
                "P7 executions stopped",
                lambda: api.queue()["running"] == 0,
                deadline,
                interval=0.5,
            )
            stop_seconds = time.monotonic() - stopping
            cancelled = sum(batch_counts(api, b)["cancelled"] for b in batches)
            if cancelled != executions:
                raise BenchmarkFailed(f"{cancelled} of {executions} executions ended CANCELLED")
            return P7Result(
                Held("runwire", executions, before, after, setup),
                queued_seconds,
                stop_seconds,
                cancelled,
            )
        finally:
            api.close()


def start_batch(api: Api, definition: str, runs: int) -> str:
    batch = api.succeed(
        START_BATCH,
        {
            "input": {
                "definition": definition,
                "runs": [{} for _ in range(runs)],
                "concurrency": runs,
            }
        },
        "startBatch",
        "BatchSuccess",
    )
    return str(batch["batch"]["id"])


def batch_counts(api: Api, batch_id: str) -> dict[str, int]:
    counts: dict[str, int] = api.call(BATCH_COUNTS, {"id": batch_id})["batch"]
    return counts


def queue_of(queued: int, running: int, slots: int) -> dict[str, int]:
    return {"queued": queued, "running": running, "slots": slots}


# ---- output -----------------------------------------------------------------------------------


def code_version() -> str:
    """The commit the servers run, and whether the working tree differs from it."""
    import subprocess

    def git(*args: str) -> str:
        found = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return found.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [line for line in git("status", "--porcelain", "server").splitlines() if line]
    return commit + (f" + uncommitted changes in {len(changed)} server files" if changed else "")


def print_header(postgres_version: str, open_files: int) -> None:
    print("P4: idle subscriptions held by one server process; P7: running executions held")
    print(f"date:     {datetime.now(UTC).isoformat(timespec='seconds')}")
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    print(
        f"machine:  {os.cpu_count()} cores, {memory_kb / 1024 / 1024:.1f} GiB,"
        f" {platform.platform()}"
    )
    print(f"python:   {platform.python_version()} ({platform.python_implementation()})")
    print(f"postgres: {postgres_version} on 127.0.0.1")
    print(f"files:    RLIMIT_NOFILE soft {open_files} (servers inherit it)")
    print(f"code:     {code_version()}")
    print(f"command:  {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print()


def print_table(title: str, unit: str, target_kb: int, rows: list[tuple[Held, Held]]) -> None:
    """One row per (measured, its baseline); the ratio is KB each over the baseline's."""
    print(title)
    print(
        f"{'variant':<28} {unit:>14} {'setup s':>8} {'RSS before MB':>14} {'RSS after MB':>13}"
        f" {'KB each':>8} {'x baseline':>11}"
    )
    for row, baseline in rows:
        print(
            f"{row.variant:<28} {row.count:>14,} {row.setup_seconds:>8.1f}"
            f" {row.rss_before_kb / 1024:>14.1f} {row.rss_after_kb / 1024:>13.1f}"
            f" {row.kb_each:>8.1f} {row.kb_each / baseline.kb_each:>11.2f}"
        )
    print(f"target: {FULL_SUBSCRIPTIONS:,} held, <= {target_kb} KB each (RSS delta / count)")
    print()


def run_p4(server: str, subscriptions: int, settle: float, deflate_modes: list[bool]) -> None:
    deadline = 60 + subscriptions / 20
    rows: list[tuple[Held, Held]] = []
    checks: list[P4Result] = []
    for deflate in deflate_modes:
        bare = measure_bare_websockets(subscriptions, deadline, settle, deflate)
        runwire = measure_runwire_subscriptions(server, subscriptions, deadline, settle, deflate)
        rows += [(bare, bare), (runwire.held, bare)]
        checks.append(runwire)
    print_table(
        f"P4 idle subscriptions ({min(SUBSCRIBED_EXECUTIONS, subscriptions)} executions,"
        f" {max(1, math.ceil(subscriptions / CONNECTIONS_PER_CLIENT))} client processes;"
        " x baseline: over the bare row with the same compression)",
        "subscriptions",
        40,
        rows,
    )
    for runwire in checks:
        print(
            f"{runwire.held.variant}: live at the end: /health followers {runwire.followers:,};"
            f" stopping one execution reached {runwire.sample_reached:,} of its"
            f" {runwire.sample_expected:,} subscriptions (terminal status + complete) in"
            f" {runwire.sample_seconds:.2f} s; followers after the clients closed:"
            f" {runwire.followers_after_close}; server open-files limit {runwire.open_files}"
        )
    print()


def run_p7(server: str, executions: int, settle: float) -> None:
    deadline = 60 + executions / 20
    bare = measure_bare_sleep_tasks(executions, settle)
    runwire = measure_runwire_executions(server, executions, deadline, settle)
    print_table(
        f"P7 running executions (one `sleep` step each, RUNWIRE_RUNNER_SLOTS={executions:,})",
        "executions",
        20,
        [(bare, bare), (runwire.held, bare)],
    )
    print(
        f"runwire: {math.ceil(executions / BATCH_RUNS)} startBatch calls took"
        f" {runwire.queued_seconds:.1f} s; all RUNNING {runwire.held.setup_seconds:.1f} s after"
        f" the first; stopBatch cancelled {runwire.cancelled:,} in {runwire.stop_seconds:.1f} s"
    )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_SUBSCRIPTIONS} subscriptions, {QUICK_EXECUTIONS} executions: a smoke run",
    )
    parser.add_argument("--subscriptions", type=int, default=None, help="P4: K connections")
    parser.add_argument("--executions", type=int, default=None, help="P7: M executions")
    parser.add_argument("--only", choices=("p4", "p7"), default=None)
    parser.add_argument(
        "--deflate",
        choices=("on", "off", "both"),
        default=None,
        help="P4 servers accept the permessage-deflate the clients offer (Runwire:"
        " RUNWIRE_WS_DEFLATE=true), or refuse it (Runwire's default), or both in turn"
        " (default: both; off with --quick)",
    )
    parser.add_argument("--server", default=POSTGRES_SERVER, help="Postgres server URL, no db")
    args = parser.parse_args()
    subscriptions = args.subscriptions or (
        QUICK_SUBSCRIPTIONS if args.quick else FULL_SUBSCRIPTIONS
    )
    executions = args.executions or (QUICK_EXECUTIONS if args.quick else FULL_EXECUTIONS)
    if subscriptions < 1 or executions < 1:
        parser.error("--subscriptions and --executions must be at least 1")
    server = args.server.rstrip("/")
    # Quick mode is a smoke run: a shorter settle keeps it fast; its figures are not results.
    settle = QUICK_SETTLE_SECONDS if args.quick else SETTLE_SECONDS
    # Every server this bench starts inherits this limit; each holds K sockets plus its own.
    open_files = raise_open_files_limit(subscriptions + 1_024)
    print_header(check_postgres(server), open_files)
    try:
        if args.only in (None, "p4"):
            deflate = args.deflate or ("off" if args.quick else "both")
            modes = {"on": [True], "off": [False], "both": [False, True]}[deflate]
            run_p4(server, subscriptions, settle, modes)
        if args.only in (None, "p7"):
            run_p7(server, executions, settle)
    except BenchmarkFailed as exc:
        sys.exit(f"BENCHMARK FAILED: {exc}")


if __name__ == "__main__":
    main()
