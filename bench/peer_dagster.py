"""The peer, side by side: Runwire and Dagster on the same workload, launched and followed live.

N runs of a 3-step job, each step printing 50 lines (each a wall-clock ns stamp) then sleeping
0.2 s, all N launched at once through each system's GraphQL API over HTTP and each followed live
over its GraphQL subscription, 8 runs at a time on either side.

- Runwire: a real `runwire serve` (tests/support/server.py) on a fresh Postgres database, bus
  Postgres, RUNWIRE_RUNNER_SLOTS=8; N `startExecution` mutations of an inline definition of three
  `shell` steps (each `python3 -c` printing the stamps), each followed by `executionEvents(afterSeq:
  0)` over graphql-transport-ws.
- Dagster (1.13, in its own virtualenv, installed by this script): a local instance (DAGSTER_HOME
  in a temp directory) on a fresh Postgres database (dagster-postgres: run, event log and schedule
  storage), QueuedRunCoordinator with max_concurrent_runs 8, `dagster-webserver` and
  `dagster-daemon` started here, a code location file written here (one job of three ops, each
  logging the stamps with `context.log.info` and sleeping 0.2 s), the in-process executor (or
  `--dagster-executor multiprocess`: a process per step); N `launchRun` mutations, each followed by
  `pipelineRunLogs` over the graphql-ws protocol the webserver speaks.

Figures per system: wall time from the first launch sent until every run's end reached its
follower; launch latency (mutation sent -> run id received) p50/p99; line latency (stamp ->
received by the follower) p50/p99; and Runwire's ratios to Dagster. Issue 21 asks Runwire to stay
>= 10x ahead on wall time and launch latency. Fails (BENCHMARK FAILED, exit 1) if any run did not
succeed or any line was lost.

Usage: .venv/bin/python bench/peer_dagster.py [--runs 20 100] [--dagster-executor multiprocess]
       [--venv PATH] [--runwire-only] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import websockets

# Run from the repository root or from bench/: the test support package lives at the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import START, BenchmarkFailed, graphql, postgres_version
from tests.support import postgres
from tests.support.server import Server, free_port, running_server

LINES = 50
PAUSE = 0.2
STEPS = 3
CONCURRENT = 8
# dagster-webserver's newest release is 1.13.28 and dagster-postgres's 0.29.27 (= 1.13.27), and
# each library pins its core's exact version: 1.13.27 is the newest 1.13 all four share.
DAGSTER_PINS = (
    "dagster==1.13.27",
    "dagster-webserver==1.13.27",
    "dagster-graphql==1.13.27",
    "dagster-postgres==0.29.27",
)
DEFAULT_VENV = Path(__file__).resolve().parent / ".peer-venv"

PRINTER = (
    "import time\n"
    f"for _ in range({LINES}):\n"
    "    print(time.time_ns(), flush=True)\n"
    f"time.sleep({PAUSE})\n"
)
# The interpreter's own file, not a `python3` found on PATH: under pyenv that is a shell script
# that costs tens of milliseconds per start, which is pyenv's, not either system's.
PYTHON = os.path.realpath(sys.executable)
RUNWIRE_DEFINITION = json.dumps(
    {
        "name": "peer-bench",
        "steps": [
            {"key": f"s{index}", "kind": "shell", "with": {"argv": [PYTHON, "-c", PRINTER]}}
            for index in range(STEPS)
        ],
    }
)
RUNWIRE_FOLLOW = """
subscription($id: ID!) {
  executionEvents(executionId: $id, afterSeq: 0) {
    events { seq type ... on OutputChunk { text } }
  }
}
"""
RUNWIRE_STATUS = "query($id: ID!) { execution(id: $id) { status } }"

DAGSTER_JOB = f'''"""The peer benchmark's job: three ops in a row, each logging {LINES} stamps."""

import time

from dagster import Definitions, In, Nothing, OpExecutionContext, job, op


def _work(context: OpExecutionContext) -> None:
    for _ in range({LINES}):
        context.log.info(str(time.time_ns()))
    time.sleep({PAUSE})


@op
def step_0(context: OpExecutionContext) -> None:
    _work(context)


@op(ins={{"after": In(Nothing)}})
def step_1(context: OpExecutionContext) -> None:
    _work(context)


@op(ins={{"after": In(Nothing)}})
def step_2(context: OpExecutionContext) -> None:
    _work(context)


@job
def peer_job() -> None:
    step_2(after=step_1(after=step_0()))


defs = Definitions(jobs=[peer_job])
'''
DAGSTER_YAML = """\
storage:
  postgres:
    postgres_url: "{url}"
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: {concurrent}
    dequeue_interval_seconds: 1
    dequeue_use_threads: true
run_launcher:
  module: dagster.core.launcher
  class: DefaultRunLauncher
telemetry:
  enabled: false
"""
DAGSTER_WORKSPACE = """\
load_from:
  - grpc_server:
      host: 127.0.0.1
      port: {port}
      location_name: peer
"""
DAGSTER_REPOSITORIES = """
{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name
  location { name } jobs { name } } } ... on PythonError { message } } }
"""
DAGSTER_DAEMONS = """
{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }
"""
DAGSTER_LAUNCH = """
mutation($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""
DAGSTER_FOLLOW = """
subscription($runId: ID!) {
  pipelineRunLogs(runId: $runId) {
    __typename
    ... on PipelineRunLogsSubscriptionSuccess {
      messages {
        __typename
        ... on MessageEvent { message }
        ... on EngineEvent { error { message } }
      }
    }
    ... on PipelineRunLogsSubscriptionFailure { message }
  }
}
"""
DAGSTER_STATUS = "query($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"
DAGSTER_ENDED = {"RunSuccessEvent", "RunFailureEvent", "RunCanceledEvent"}
DAGSTER_EXECUTORS: dict[str, dict[str, dict[str, Any]]] = {
    "in_process": {"in_process": {}},
    "multiprocess": {"multiprocess": {}},
}


@dataclass
class Figures:
    """One system's measurements for one N."""

    system: str
    runs: int
    wall: float = 0.0
    launches: list[float] = field(default_factory=list)  # seconds
    lines: list[float] = field(default_factory=list)  # milliseconds


def stamps(text: str, received: int) -> list[float]:
    """Milliseconds from each stamped line's print to `received`."""
    return [(received - int(line)) / 1e6 for line in text.split() if line.isdigit()]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def launch_all(
    runs: int,
    launch: Callable[[], Awaitable[str]],
    follow: Callable[[str], Awaitable[tuple[list[float], float]]],
    figures: Figures,
) -> list[str]:
    """Launch `runs` at once, follow each from its id on; fill in `figures`; the ids."""

    async def one() -> tuple[str, list[float], float]:
        sent = time.perf_counter()
        run_id = await launch()
        figures.launches.append(time.perf_counter() - sent)
        latencies, ended = await follow(run_id)
        return run_id, latencies, ended

    began = time.perf_counter()
    async with asyncio.timeout(120 + runs * 30):
        results = await asyncio.gather(*(one() for _ in range(runs)))
    figures.wall = max(ended for _, _, ended in results) - began
    for run_id, latencies, _ in results:
        if len(latencies) != STEPS * LINES:
            raise BenchmarkFailed(
                f"{figures.system} run {run_id}: {len(latencies)} lines, not {STEPS * LINES}"
            )
        figures.lines.extend(latencies)
    return [run_id for run_id, _, _ in results]


# Runwire --------------------------------------------------------------------------------------


async def runwire_follow(server: Server, execution_id: str) -> tuple[list[float], float]:
    latencies: list[float] = []
    async with websockets.connect(
        server.graphql_ws, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {server.token}"}}
        await ws.send(json.dumps(init))
        if json.loads(await ws.recv())["type"] != "connection_ack":
            raise BenchmarkFailed("Runwire: no connection_ack")
        payload = {"query": RUNWIRE_FOLLOW, "variables": {"id": execution_id}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        async for raw in ws:
            received = time.time_ns()
            message = json.loads(raw)
            if message["type"] == "complete":
                return latencies, time.perf_counter()
            if message["type"] != "next" or message["payload"].get("errors"):
                raise BenchmarkFailed(f"Runwire subscription: {message}")
            for event in message["payload"]["data"]["executionEvents"]["events"]:
                if event["type"] == "OUTPUT":
                    latencies.extend(stamps(event["text"], received))
    raise BenchmarkFailed(f"Runwire {execution_id}: closed before complete")


async def runwire_round(server: Server, runs: int) -> Figures:
    figures = Figures("Runwire", runs)
    async with httpx.AsyncClient(headers=server.headers, timeout=120) as client:

        async def launch() -> str:
            response = await client.post(
                server.graphql_http,
                json={"query": START, "variables": {"definition": RUNWIRE_DEFINITION}},
            )
            answer = response.json()
            started = (answer.get("data") or {}).get("startExecution") or {}
            if started.get("__typename") != "StartExecutionSuccess":
                raise BenchmarkFailed(f"Runwire startExecution: {answer}")
            return str(started["execution"]["id"])

        ids = await launch_all(
            runs, launch, lambda execution_id: runwire_follow(server, execution_id), figures
        )
    for execution_id in ids:
        status = graphql(server, RUNWIRE_STATUS, {"id": execution_id})["execution"]["status"]
        if status != "SUCCEEDED":
            raise BenchmarkFailed(f"Runwire execution {execution_id} ended {status}")
    return figures


# Dagster --------------------------------------------------------------------------------------


def ensure_dagster(venv: Path) -> str:
    """The virtualenv's Dagster version, after creating and installing it unless present."""
    if not (venv / "bin" / "dagster-webserver").exists():
        print(f"installing {' '.join(DAGSTER_PINS)} into {venv} (a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *DAGSTER_PINS], check=True)
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import dagster; print(dagster.__version__)"],
        check=True,
        capture_output=True,
        text=True,
    )
    return found.stdout.strip()


@dataclass(frozen=True)
class Dagster:
    url: str
    repository: str
    location: str
    processes: tuple[subprocess.Popen[bytes], ...]
    folder: Path

    @property
    def graphql_http(self) -> str:
        return f"{self.url}/graphql"

    @property
    def graphql_ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"

    def query(self, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(
            self.graphql_http, json={"query": text, "variables": variables or {}}, timeout=60
        )
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise BenchmarkFailed(f"Dagster: HTTP {response.status_code} {body}")
        return dict(body["data"])

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                command = process.args if isinstance(process.args, list) else [process.args]
                log = self.folder / f"{Path(str(command[0])).name}.log"
                tail = log.read_text()[-3000:]
                raise BenchmarkFailed(
                    f"Dagster: {process.args!r} exited {process.returncode}:\n{tail}"
                )


@contextlib.contextmanager
def dagster_database() -> Iterator[str]:
    """A fresh, empty Postgres database for Dagster's storage, dropped afterwards."""
    name = f"peer_dagster_{secrets.token_hex(4)}"

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(f"{postgres.POSTGRES_SERVER}/postgres")
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        # SQLAlchemy 2.1 reads postgresql:// as psycopg 3; dagster-postgres installs psycopg2.
        yield f"{postgres.POSTGRES_SERVER}/{name}".replace(
            "postgresql://", "postgresql+psycopg2://"
        )
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def running_dagster(venv: Path, folder: Path) -> Iterator[Dagster]:
    """A Dagster instance: webserver + daemon on a fresh database, the job's location loaded."""
    with dagster_database() as url, contextlib.ExitStack() as stack:
        home = folder / "dagster-home"
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text(DAGSTER_YAML.format(url=url, concurrent=CONCURRENT))
        (folder / "peer_job.py").write_text(DAGSTER_JOB)
        code_port = free_port()
        (folder / "workspace.yaml").write_text(DAGSTER_WORKSPACE.format(port=code_port))
        # The daemon's gRPC calls to the code server (start a run) give up after 60 s by
        # default, which a loaded 2-core machine exceeds: the run is then failed, not retried.
        env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_GRPC_TIMEOUT_SECONDS": "600"}
        for name in ("PYTHONPATH", "VIRTUAL_ENV"):
            env.pop(name, None)
        port = free_port()
        code_server = [
            # `dagster api grpc`, not `dagster code-server start`: the latter proxies to a child
            # server that shuts itself down when the proxy's heartbeat is 30 s late, which a
            # loaded machine makes happen, and a run sent to it then fails.
            str(venv / "bin" / "dagster"),
            "api",
            "grpc",
            "-h",
            "127.0.0.1",
            "-p",
            str(code_port),
            "-f",
            "peer_job.py",
            "--location-name",
            "peer",
        ]
        commands = [
            code_server,
            [
                str(venv / "bin" / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "workspace.yaml",
            ],
            [str(venv / "bin" / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        ]
        processes = []
        for command in commands:
            output = (folder / f"{Path(command[0]).name}.log").open("wb")
            stack.callback(output.close)
            process = subprocess.Popen(
                command, cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT
            )
            processes.append(process)
            stack.callback(_stop, process)
            if command is code_server:
                _wait_code_server(venv, code_port, process, folder)
        dagster = Dagster(f"http://127.0.0.1:{port}", "", "", tuple(processes), folder)
        try:
            repository, location = _wait_ready(dagster, folder)
            yield Dagster(dagster.url, repository, location, dagster.processes, folder)
        except BenchmarkFailed as exc:
            # The daemon's log says why a run failed to start; the folder goes with the run.
            log = folder / "dagster-daemon.log"
            tail = "\n".join(log.read_text().splitlines()[-40:]) if log.exists() else ""
            raise BenchmarkFailed(f"{exc}\n--- dagster-daemon.log, last lines:\n{tail}") from exc


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_code_server(
    venv: Path, port: int, process: subprocess.Popen[bytes], folder: Path
) -> None:
    """Wait until the code server answers gRPC health checks (the others connect to it)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (folder / "dagster.log").read_text()[-3000:]
            raise BenchmarkFailed(f"Dagster's code server exited {process.returncode}:\n{log}")
        check = subprocess.run(
            [str(venv / "bin" / "dagster"), "api", "grpc-health-check", "-p", str(port)],
            capture_output=True,
            check=False,
        )
        if check.returncode == 0:
            return
        time.sleep(0.5)
    raise BenchmarkFailed("Dagster's code server not serving within 240 s")


def _wait_ready(dagster: Dagster, folder: Path) -> tuple[str, str]:
    """The job's repository and location, once the webserver serves them and the run queue's
    daemon is healthy."""
    deadline = time.monotonic() + 240
    repository = location = ""
    while time.monotonic() < deadline:
        dagster.check_alive()
        try:
            if not repository:
                found = dagster.query(DAGSTER_REPOSITORIES)["repositoriesOrError"]
                for node in found.get("nodes", []):
                    if any(job["name"] == "peer_job" for job in node["jobs"]):
                        repository, location = node["name"], node["location"]["name"]
            else:
                health = dagster.query(DAGSTER_DAEMONS)["instance"]["daemonHealth"]
                statuses = {
                    status["daemonType"]: status["healthy"]
                    for status in health["allDaemonStatuses"]
                }
                if statuses.get("QUEUED_RUN_COORDINATOR"):
                    return repository, location
        except (httpx.HTTPError, ValueError):
            pass  # the webserver is still starting
        time.sleep(0.5)
    logs = "\n".join(path.read_text()[-2000:] for path in folder.glob("dagster-*.log"))
    raise BenchmarkFailed(f"Dagster not ready within 240 s:\n{logs}")


async def dagster_follow(dagster: Dagster, run_id: str) -> tuple[list[float], float]:
    latencies: list[float] = []
    others: list[str] = []  # what the run said besides the lines, for a failure's message
    async with websockets.connect(
        dagster.graphql_ws, subprotocols=[websockets.Subprotocol("graphql-ws")], max_size=None
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        payload = {"query": DAGSTER_FOLLOW, "variables": {"runId": run_id}}
        await ws.send(json.dumps({"id": "1", "type": "start", "payload": payload}))
        async for raw in ws:
            received = time.time_ns()
            message = json.loads(raw)
            if message["type"] in ("connection_ack", "ka"):
                continue
            if message["type"] != "data" or message["payload"].get("errors"):
                raise BenchmarkFailed(f"Dagster subscription: {message}")
            logs = message["payload"]["data"]["pipelineRunLogs"]
            if logs["__typename"] != "PipelineRunLogsSubscriptionSuccess":
                raise BenchmarkFailed(f"Dagster subscription: {logs}")
            for event in logs["messages"]:
                kind = event["__typename"]
                if kind == "LogMessageEvent":
                    latencies.extend(stamps(event["message"], received))
                else:
                    error = (event.get("error") or {}).get("message", "")
                    others.append(f"{kind}: {event.get('message', '')} {error}".rstrip())
                if kind == "RunSuccessEvent":
                    return latencies, time.perf_counter()
                if kind in DAGSTER_ENDED:
                    said = "\n  ".join(others[-8:])
                    raise BenchmarkFailed(f"Dagster run {run_id} ended {kind}:\n  {said}")
    raise BenchmarkFailed(f"Dagster {run_id}: closed before the run ended")


async def dagster_round(dagster: Dagster, runs: int, executor: str) -> Figures:
    figures = Figures(f"Dagster ({executor})", runs)
    params = {
        "selector": {
            "repositoryLocationName": dagster.location,
            "repositoryName": dagster.repository,
            "jobName": "peer_job",
        },
        "runConfigData": {"execution": {"config": DAGSTER_EXECUTORS[executor]}},
    }
    async with httpx.AsyncClient(timeout=600) as client:

        async def launch() -> str:
            response = await client.post(
                dagster.graphql_http,
                json={"query": DAGSTER_LAUNCH, "variables": {"executionParams": params}},
            )
            answer = response.json()
            launched = (answer.get("data") or {}).get("launchRun") or {}
            if launched.get("__typename") != "LaunchRunSuccess":
                raise BenchmarkFailed(f"Dagster launchRun: {answer}")
            return str(launched["run"]["runId"])

        ids = await launch_all(
            runs, launch, lambda run_id: dagster_follow(dagster, run_id), figures
        )
    for run_id in ids:
        status = dagster.query(DAGSTER_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status != "SUCCESS":
            raise BenchmarkFailed(f"Dagster run {run_id} ended {status}")
    return figures


# Report ---------------------------------------------------------------------------------------

ONLY_DAGSTER = (
    "Dagster does, Runwire does not: software-defined assets with lineage, materialization "
    "history, freshness and asset checks; typed values passed between ops by IO managers; "
    "sensors, partitions and backfills; pluggable executors and run launchers (a process per "
    "run or per step, Docker, Kubernetes, Celery) and a large library of integrations (dbt, "
    "Spark, warehouses). Both have schedules, per-step retries with backoff and a stored, "
    "cursor-resumable event log per run."
)
ONLY_RUNWIRE = (
    "Runwire does, Dagster does not: a run from an inline definition (no code location to "
    "deploy or reload); a step's raw stdout/stderr in the same ordered, stored event stream as "
    "its status changes, live on one subscription resumable at any seq (afterSeq) - in Dagster "
    "print() goes to per-step compute-log files on a separate feed (capturedLogs), so its ops "
    "here log each line with context.log.info (one stored event per line), which is what "
    "pipelineRunLogs follows; each step attempt contained (its own directory, a uid of its own "
    "when the server runs as root - not exercised here, steps run as the server's user - and "
    "a stop that ends its process group); pause/resume and human review steps inside a run; "
    "LLM, agent and phone-call steps with usage and cost; admission by runner slots with no "
    "polling daemon between launch and start (Dagster's queued coordinator dequeues every "
    "second here, and its default launcher starts a Python process per run that loads the code "
    "location)."
)


def row(figures: Figures) -> str:
    launches = [seconds * 1000 for seconds in figures.launches]
    return (
        f"  {figures.system:24} {figures.runs:5d} {figures.wall:9.2f}"
        f" {statistics.median(launches):10.1f} {percentile(launches, 0.99):10.1f}"
        f" {statistics.median(figures.lines):10.1f} {percentile(figures.lines, 0.99):10.1f}"
    )


def ratios(runwire: Figures, dagster: Figures) -> str:
    """How many times Runwire is ahead of `dagster` on each figure (theirs / ours)."""

    def ms(seconds: list[float]) -> list[float]:
        return [value * 1000 for value in seconds]

    wall = dagster.wall / runwire.wall
    launch_p50 = statistics.median(dagster.launches) / statistics.median(runwire.launches)
    launch_p99 = percentile(ms(dagster.launches), 0.99) / percentile(ms(runwire.launches), 0.99)
    line_p50 = statistics.median(dagster.lines) / statistics.median(runwire.lines)
    line_p99 = percentile(dagster.lines, 0.99) / percentile(runwire.lines, 0.99)
    verdict = "met" if wall >= 10 and launch_p50 >= 10 else "NOT met"
    return (
        f"  N={runwire.runs}, Runwire ahead of {dagster.system}: wall {wall:.1f}x,"
        f" launch p50 {launch_p50:.1f}x p99 {launch_p99:.1f}x,"
        f" line p50 {line_p50:.1f}x p99 {line_p99:.1f}x"
        f" (target >= 10x on wall and launch p50: {verdict})"
    )


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


HEADER = (
    f"  {'system':24} {'runs':>5} {'wall s':>9} {'launch p50':>10} {'launch p99':>10}"
    f" {'line p50':>10} {'line p99':>10}   (latencies in ms)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[20, 100])
    parser.add_argument(
        "--dagster-executor", choices=sorted(DAGSTER_EXECUTORS), nargs="+", default=["in_process"]
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="Dagster's virtualenv")
    parser.add_argument("--runwire-only", action="store_true", help="leave Dagster out")
    parser.add_argument(
        "--quick", action="store_true", help="2 runs; Dagster only if its virtualenv exists"
    )
    args = parser.parse_args()
    counts = [2] if args.quick else args.runs
    with_dagster = not args.runwire_only and (
        not args.quick or (args.venv / "bin" / "dagster-webserver").exists()
    )
    try:
        version = ensure_dagster(args.venv) if with_dagster else ""
        print(
            f"Peer: {STEPS} steps x {LINES} lines + {PAUSE} s sleep per run, {CONCURRENT} runs at"
            f" a time; PostgreSQL {postgres_version()}; load {load_average()}"
        )
        print(
            f"Dagster {version}, executor(s) {', '.join(args.dagster_executor)}"
            if version
            else "Dagster left out (--runwire-only, or --quick without its virtualenv)"
        )
        results: dict[int, list[Figures]] = {count: [] for count in counts}
        print(HEADER, flush=True)
        with tempfile.TemporaryDirectory(prefix="runwire-bench-peer-") as name:
            folder = Path(name)
            settings = {"RUNWIRE_LOAD_EXAMPLES": "false", "RUNWIRE_RUNNER_SLOTS": str(CONCURRENT)}
            with running_server("postgres", folder / "server", settings) as server:
                asyncio.run(runwire_round(server, 1))  # warm-up, untimed
                for count in counts:
                    results[count].append(asyncio.run(runwire_round(server, count)))
                    print(row(results[count][-1]), flush=True)
            if with_dagster:
                with running_dagster(args.venv, folder / "dagster") as dagster:
                    for executor in args.dagster_executor:
                        asyncio.run(dagster_round(dagster, 1, executor))  # warm-up, untimed
                        for count in counts:
                            dagster.check_alive()
                            results[count].append(
                                asyncio.run(dagster_round(dagster, count, executor))
                            )
                            print(row(results[count][-1]), flush=True)
        for figures in results.values():
            for other in figures[1:]:
                print(ratios(figures[0], other))
        print(f"load after: {load_average()}")
        print()
        print(ONLY_DAGSTER)
        print()
        print(ONLY_RUNWIRE)
    except BenchmarkFailed as exc:
        sys.exit(f"BENCHMARK FAILED: {exc}")


if __name__ == "__main__":
    main()
