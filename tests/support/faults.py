"""A small deployment to break: one API process and runner processes on one Postgres, and the
checks that must hold whatever broke (no event lost, nothing stuck, no finished step run twice).

Each process is a `runwire serve` of its own, forked by the test fork server
(tests/support/forkserver.py) as the other test servers are, so a test can kill one with SIGKILL
or SIGTERM and start another in its place; forking spares each start the ~1 s of imports an exec
costs, and the runners of a cluster start together.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from gql import Client, GraphQLRequest
from tests.support import postgres
from tests.support.forkserver import ForkServer
from tests.support.graphql import FOLLOW, ws_transport
from tests.support.postgres import POSTGRES_SERVER
from tests.support.server import Server, free_port

from runwire.db.engine import Database

# Leases short enough that a lost runner is noticed in seconds, long enough that a busy test
# machine does not make runners give up on their own.
FAULT_SETTINGS = {
    "RUNWIRE_LEASE_SECONDS": "3",
    "RUNWIRE_HEARTBEAT_SECONDS": "0.5",
    "RUNWIRE_DRAIN_SECONDS": "1",
    "RUNWIRE_GRACE_SECONDS": "0.5",
    "RUNWIRE_POLL_SECONDS": "0.2",
    "RUNWIRE_LOAD_EXAMPLES": "false",
    # Steps as the server's user, as on every test server (see OWN_USER_STEPS).
    "RUNWIRE_STEP_USER": "",
}


@dataclass
class Cluster:
    """One API process (no runner) and runner processes, sharing a database and the bus."""

    directory: Path
    database_url: str
    api: Server
    runners: list[Server] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)

    def start_runner(self) -> Server:
        return self.start_runners(1)[0]

    def start_runners(self, count: int) -> list[Server]:
        """Start `count` runner processes together, then wait until each is ready."""
        launched = self.launch_runners(count)
        ready = _ready(self.directory, launched)
        self.runners[-count:] = ready
        return ready

    def launch_runners(self, count: int) -> list[Server]:
        """Fork `count` runner processes, not ready yet; listed at once, so they are stopped
        with the cluster whatever happens next."""
        first = len(self.runners)
        self.runners.extend(
            _launch(
                self.directory,
                self.database_url,
                {**self.settings, "RUNWIRE_RUNNER": "true"},
                f"runner-{index}",
            )
            for index in range(first, first + count)
        )
        return self.runners[first:]

    def runner_by_owner(self, owner: str) -> Server:
        """The runner process whose lease owner name this is (`host:pid:…`)."""
        pid = int(owner.split(":")[1])
        return next(r for r in self.runners if r.process.pid == pid)

    def logs(self) -> str:
        return "".join(
            server.log.read_text(errors="replace") for server in (self.api, *self.runners)
        )


@contextlib.asynccontextmanager
async def cluster(directory: Path, runners: int = 2, **settings: str) -> AsyncIterator[Cluster]:
    """Start the cluster on a fresh Postgres database (NOTIFY bus); stop every process after."""
    async with postgres.fresh_database() as url:
        async with Database.open(url, migrate=True):
            pass  # as `runwire migrate` does before the processes start
        merged = {**FAULT_SETTINGS, **settings}
        api = _launch(directory, url, {**merged, "RUNWIRE_RUNNER": "false"}, "api")
        found = Cluster(directory, url, api, settings=merged)
        try:
            # The API and the runners start together: whichever bootstraps the empty database
            # writes the admin token, once (bootstrap is safe for processes starting together).
            launched = found.launch_runners(runners)
            ready = await asyncio.to_thread(_ready, directory, [api, *launched])
            found.api, found.runners = ready[0], ready[1:]
            yield found
        finally:
            await asyncio.to_thread(stop_all, [found.api, *found.runners], signal.SIGTERM)


def _launch(directory: Path, url: str, settings: dict[str, str], name: str) -> Server:
    """Fork a `runwire serve` with these settings; it is not ready yet (see `_ready`)."""
    port = free_port()
    data = directory / name / "data"
    data.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "RUNWIRE_DATA_DIR": str(data),
        "RUNWIRE_PORT": str(port),
        "RUNWIRE_DATABASE_URL": url,
        "RUNWIRE_BUS_URL": url,
        **settings,
    }
    log = directory / f"{name}-{port}.log"
    process = ForkServer.start_server(env, log)
    return Server(url=f"http://127.0.0.1:{port}", env=env, log=log, process=process)


def _ready(directory: Path, servers: list[Server]) -> list[Server]:
    """Wait until each launched server is ready; them, with the cluster's admin token."""
    for server in servers:
        _wait_ready(server)
    # Only the first start on an empty database writes the admin token; the others reuse it.
    tokens = sorted(directory.glob("*/data/admin-token"))
    token = tokens[0].read_text().strip()
    return [dataclasses.replace(server, token=token) for server in servers]


def _wait_ready(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.exited():
            raise RuntimeError(f"server exited early:\n{server.log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.log.read_text()}")


def stop(server: Server, how: signal.Signals, timeout: float = 30) -> float:
    """Signal the process and wait for it to exit; the seconds that took."""
    started = time.monotonic()
    server.process.send_signal(how)
    _exited(server, how, timeout)
    return time.monotonic() - started


def stop_all(servers: list[Server], how: signal.Signals, timeout: float = 30) -> None:
    """Signal every process at once, then wait for each: they stop together, not in turn."""
    for server in servers:
        server.process.send_signal(how)
    for server in servers:
        _exited(server, how, timeout)


def _exited(server: Server, how: signal.Signals, timeout: float) -> None:
    if not server.process.wait(timeout):
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout)
        raise AssertionError(f"{server.url} did not exit within {timeout}s of {how.name}")


# ---- faults of the database ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def read_only(url: str) -> AsyncIterator[None]:
    """The database read-only for the block, its sessions cut at both ends (as in an outage)."""
    name = url.rsplit("/", 1)[1]
    await _admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    await cut_sessions(url)
    try:
        yield
    finally:
        await _admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
        # Sessions opened meanwhile are read-only for their life: end them too.
        await cut_sessions(url)


async def cut_sessions(url: str) -> int:
    """Terminate every other session of the database: what a network cut or a restart does."""
    name = url.rsplit("/", 1)[1]
    connection = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres")
    try:
        return int(
            await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
        )
    finally:
        await connection.close()


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


# ---- what must hold --------------------------------------------------------------------------


class Follower:
    """A subscriber that resumes from the last seq it got whenever its connection drops.

    It keeps every event it was sent, duplicates included, so the checks see what the server
    delivered, not what a careful client would keep.
    """

    def __init__(self, server: Server, execution_id: str) -> None:
        self.server = server
        self.execution_id = execution_id
        self.received: list[int] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        last = 0
        while True:
            try:
                async with Client(transport=ws_transport(self.server)) as session:
                    request = GraphQLRequest(
                        FOLLOW, variable_values={"id": self.execution_id, "after": last}
                    )
                    async for message in session.subscribe(request):
                        for event in message["executionEvents"]["events"]:
                            self.received.append(event["seq"])
                            last = max(last, event["seq"])
                            if event.get("status") in TERMINAL:
                                return
            except Exception:
                await asyncio.sleep(0.2)  # the API process is up; a drop is a cut connection

    async def done(self, timeout: float) -> list[int]:
        async with asyncio.timeout(timeout):
            await asyncio.shield(self.task)
        return self.received


TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}


async def rows(url: str, execution_ids: list[str]) -> dict[str, asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        found = await connection.fetch(
            "SELECT id, status, owner, last_seq, error FROM runwire_execution WHERE id = ANY($1)",
            execution_ids,
        )
    finally:
        await connection.close()
    return {row["id"]: row for row in found}


async def settled(url: str, execution_ids: list[str], timeout: float) -> dict[str, Any]:
    """Wait until every execution has ended and no runner holds it; their rows."""
    async with asyncio.timeout(timeout):
        while True:
            found = await rows(url, execution_ids)
            if all(r["status"] in TERMINAL and r["owner"] is None for r in found.values()):
                return found
            await asyncio.sleep(0.1)


async def check_nothing_lost(url: str, followers: list[Follower], timeout: float = 60) -> None:
    """Stored seqs are exactly 1..last, and each follower got exactly those, once, in order."""
    connection = await asyncpg.connect(url)
    try:
        for follower in followers:
            received = await follower.done(timeout)
            last = await connection.fetchval(
                "SELECT last_seq FROM runwire_execution WHERE id = $1", follower.execution_id
            )
            stored = [
                r["seq"]
                for r in await connection.fetch(
                    "SELECT seq FROM runwire_event WHERE execution_id = $1 ORDER BY seq",
                    follower.execution_id,
                )
            ]
            assert stored == list(range(1, last + 1)), (follower.execution_id, stored)
            assert received == stored, (follower.execution_id, received, stored)
    finally:
        await connection.close()


async def check_no_success_repeated(url: str, execution_ids: list[str]) -> None:
    """No step has an attempt after one that succeeded: a finished step never runs again."""
    connection = await asyncpg.connect(url)
    try:
        attempts = await connection.fetch(
            "SELECT execution_id, key, attempt, status FROM runwire_step_run"
            " WHERE execution_id = ANY($1) ORDER BY execution_id, key, attempt",
            execution_ids,
        )
    finally:
        await connection.close()
    succeeded: set[tuple[str, str]] = set()
    for row in attempts:
        step = (row["execution_id"], row["key"])
        assert step not in succeeded, f"step {step} ran again after it succeeded"
        if row["status"] == "SUCCEEDED":
            succeeded.add(step)


async def events_of(url: str, execution_id: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(
            await connection.fetch(
                "SELECT seq, at, type, step_key, attempt, data FROM runwire_event"
                " WHERE execution_id = $1 ORDER BY seq",
                execution_id,
            )
        )
    finally:
        await connection.close()
