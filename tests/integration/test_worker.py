"""`runwire worker`: runs what an API-only server queues, answers probes, drains on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support import postgres
from tests.support.graphql import (
    definition,
    execute,
    follow,
    gated_step,
    start,
    wait_for_status,
)
from tests.support.server import Server, database, running_server

SCRAPE_TOKEN = "worker-scrape-token-0123456789"


@pytest.fixture(scope="module")
def api_and_worker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Server, Server]]:
    """A Postgres database, an API-only server and a worker on it, sharing the NOTIFY bus."""
    directory = tmp_path_factory.mktemp("worker")
    with (
        database("postgres") as url,
        running_server("postgres", directory / "api", {"RUNWIRE_RUNNER": "false"}, url) as api,
        # A worker that polls rarely: a start must reach it on the bus.
        running_server(
            "postgres",
            directory / "worker",
            {"RUNWIRE_POLL_SECONDS": "20", "RUNWIRE_METRICS_TOKEN": SCRAPE_TOKEN},
            url,
            token=api.token,
            command="worker",
        ) as worker,
    ):
        assert url is not None
        yield url, api, worker


async def test_health_and_ready_answer_and_nothing_else_does(
    api_and_worker: tuple[str, Server, Server],
) -> None:
    _, _, worker = api_and_worker
    async with httpx.AsyncClient(timeout=5) as client:
        health = await client.get(f"{worker.url}/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "followers": 0, "down": []}
        for path in ("/graphql", "/executions/x/events", "/schema", "/"):
            assert (await client.get(f"{worker.url}{path}")).status_code == 404, path
    # Its runner's record is read at the next check (every second) after it was written.
    ready = await _ready_when(worker, lambda body: body["components"]["runners"]["alive"] > 0)
    assert ready == {
        "ready": True,
        "components": {
            "database": {"up": True},
            "bus": {"up": True},
            "migrations": {"up": True},
            # Up by definition (this process runs a runner), and its own is alive.
            "runners": {"up": True, "alive": 1},
        },
        "warnings": [],
    }


async def test_runs_what_an_api_only_server_queued(
    api_and_worker: tuple[str, Server, Server], tmp_path: Path
) -> None:
    url, api, worker = api_and_worker
    gate = tmp_path / "gate"
    execution_id = await start(api, definition=definition(gated_step("wait", gate)))
    assert await _owner_pid(url, execution_id) == worker.process.pid
    gate.touch()
    async with asyncio.timeout(30):
        events = await follow(api, execution_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["status"] == "SUCCEEDED"


async def test_metrics_count_what_the_worker_ran(
    api_and_worker: tuple[str, Server, Server],
) -> None:
    _, api, worker = api_and_worker
    before = await _scrape(worker)
    # Postgres: the pool's series (Database.open starts it with 2 to 20 connections).
    assert 2 <= _value(before, "runwire_db_pool_size") <= 20
    assert 0 <= _value(before, "runwire_db_pool_connections_in_use") <= 20
    assert _value(before, "runwire_runner_slots") == 8
    shell = '{key: s, kind: shell, with: {argv: ["true"]}}'
    ran = [await start(api, definition=definition(shell)) for _ in range(3)]
    for execution_id in ran:
        assert (await wait_for_status(api, execution_id, {"SUCCEEDED", "FAILED"}))["status"] == (
            "SUCCEEDED"
        )
    after = await _scrape(worker)
    ended = (
        "runwire_executions_ended_total",
        frozenset({("scenario", ""), ("status", "SUCCEEDED")}),
    )
    assert after[ended] - before.get(ended, 0) == 3
    shells = (
        "runwire_step_attempt_duration_seconds_count",
        frozenset({("kind", "shell"), ("status", "SUCCEEDED")}),
    )
    assert after[shells] - before.get(shells, 0) == 3
    # The API replica's notices reach the worker over NOTIFY, and the worker's its own.
    assert _value(after, "runwire_bus_lag_seconds_count") > _value(
        before, "runwire_bus_lag_seconds_count"
    )
    assert _value(after, "runwire_events_appended_total") > _value(
        before, "runwire_events_appended_total"
    )
    async with httpx.AsyncClient(timeout=5) as client:
        refused = await client.get(f"{worker.url}/metrics")
    assert refused.status_code == 401


async def _scrape(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}
        )
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(series: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> float:
    return series.get((name, frozenset()), 0.0)


async def test_sigterm_hands_running_work_to_the_next_worker(tmp_path: Path) -> None:
    # The drain of `runwire serve`'s runner, through the worker's lifespan: the step that does not
    # finish within RUNWIRE_DRAIN_SECONDS is interrupted and its execution queued again, to resume
    # on another worker (a shell step is retried there only when it says it may be).
    drain = {"RUNWIRE_DRAIN_SECONDS": "1"}
    gate = tmp_path / "gate"
    async with postgres.fresh_database() as url:
        with running_server("postgres", tmp_path / "api", {"RUNWIRE_RUNNER": "false"}, url) as api:
            with running_server(
                "postgres", tmp_path / "first", drain, url, token=api.token, command="worker"
            ) as first:
                step = gated_step("wait", gate, extra="on_runner_lost: retry, ")
                execution_id = await start(api, definition=definition(step))
                assert await _owner_pid(url, execution_id) == first.process.pid
                began = time.monotonic()
                first.process.send_signal(signal.SIGTERM)
                ended = await asyncio.to_thread(first.process.wait, 15)
                took = time.monotonic() - began
                log = first.log.read_text()
                assert ended, log
                assert "Application shutdown complete." in log
                assert "Traceback" not in log
                # Drain (1 s) + the step's SIGINT grace (1 s) + a heartbeat, and room for CI.
                assert took < 10, f"{took:.1f}s"
            assert await _owner_pid(url, execution_id, wait=0) is None
            gate.touch()
            with running_server(
                "postgres", tmp_path / "second", drain, url, token=api.token, command="worker"
            ):
                final = await wait_for_status(api, execution_id, {"SUCCEEDED", "FAILED"}, 30)
    assert final["status"] == "SUCCEEDED", final


# Short leases: an API replica warns once work has waited a lease, and a killed worker's record
# stops counting a lease after its last heartbeat.
SHORT_LEASE = {"RUNWIRE_LEASE_SECONDS": "3", "RUNWIRE_HEARTBEAT_SECONDS": "1"}
QUEUE = "{ queue { queued runnersAlive runnerSlots oldestQueuedAgeSeconds warning } }"
RUNNERS = "{ runners { id host pid startedAt lastSeenAt slots busy } }"
NO_RUNNER = "no runner is alive: start `runwire worker`, or a server with RUNWIRE_RUNNER=true"
CLEARED = "queue: no longer waiting for a runner"


async def test_queued_work_without_a_runner_warns_until_a_worker_comes(tmp_path: Path) -> None:
    async with postgres.fresh_database() as url:
        api_settings = {"RUNWIRE_RUNNER": "false", **SHORT_LEASE}
        with running_server("postgres", tmp_path / "api", api_settings, url) as api:
            assert (await execute(api, RUNNERS))["runners"] == []
            ready = await _ready(api)
            assert ready["components"]["runners"] == {"up": False, "alive": 0}
            assert ready["warnings"] == []  # nothing waits: no runner is no warning yet
            await _schema_behind_is_unready(api, url)

            execution_id = await start(api, definition=definition(QUICK_STEP))
            ready = await _ready_when(api, lambda body: bool(body["warnings"]))
            # Ready all the same: the API serves and queues while the workers are down.
            assert ready["ready"] is True
            assert ready["components"]["runners"] == {"up": False, "alive": 0}
            (warning,) = ready["warnings"]
            assert warning.startswith("1 execution is queued (the oldest for ")
            assert warning.endswith(NO_RUNNER)
            queue = (await execute(api, QUEUE))["queue"]
            assert (queue["queued"], queue["runnersAlive"]) == (1, 0)
            assert queue["oldestQueuedAgeSeconds"] > 3
            assert queue["warning"].endswith(NO_RUNNER)
            status = await wait_for_status(api, execution_id, {"QUEUED"}, 1)
            assert status["status"] == "QUEUED"
            await asyncio.sleep(2)  # two more checks: the warning is not logged again
            assert api.log.read_text().count(NO_RUNNER) == 1

            worker_settings = {**SHORT_LEASE, "RUNWIRE_RUNNER_SLOTS": "3"}
            with running_server(
                "postgres", tmp_path / "w1", worker_settings, url, token=api.token, command="worker"
            ) as worker:
                final = await wait_for_status(api, execution_id, {"SUCCEEDED", "FAILED"}, 30)
                assert final["status"] == "SUCCEEDED"
                ready = await _ready_when(api, lambda body: not body["warnings"])
                assert ready["components"]["runners"] == {"up": True, "alive": 1}
                # Busy as of its last heartbeat: 0 at the one after the execution ended.
                async with asyncio.timeout(10):
                    while (runners := (await execute(api, RUNNERS))["runners"])[0]["busy"]:
                        await asyncio.sleep(0.1)
                (runner,) = runners
                assert runner["pid"] == worker.process.pid
                assert (runner["slots"], runner["busy"]) == (3, 0)
                assert runner["id"].split(":")[1] == str(worker.process.pid)
                queue = (await execute(api, QUEUE))["queue"]
                assert queue == {
                    "queued": 0,
                    "runnersAlive": 1,
                    "runnerSlots": 3,
                    "oldestQueuedAgeSeconds": None,
                    "warning": None,
                }
            # A worker stopped cleanly removes its record as it stops claiming.
            assert (await execute(api, RUNNERS))["runners"] == []
            log = api.log.read_text()
            assert (log.count(NO_RUNNER), log.count(CLEARED)) == (1, 1), log

            with running_server(
                "postgres", tmp_path / "w2", SHORT_LEASE, url, token=api.token, command="worker"
            ) as killed:
                assert [r["pid"] for r in (await execute(api, RUNNERS))["runners"]] == [
                    killed.process.pid
                ]
                killed.process.send_signal(signal.SIGKILL)
                assert await asyncio.to_thread(killed.process.wait, 10)
                began = time.monotonic()
                # Still counted until its last heartbeat is a lease old, then not.
                assert len((await execute(api, RUNNERS))["runners"]) == 1
                async with asyncio.timeout(10):
                    while (await execute(api, RUNNERS))["runners"]:
                        await asyncio.sleep(0.1)
                # Its last heartbeat was at most one before the kill: gone 2 to 3 s after it.
                assert 1 < time.monotonic() - began <= 8
            ready = await _ready_when(api, lambda body: not body["components"]["runners"]["up"])
            assert ready["components"]["runners"] == {"up": False, "alive": 0}


ANY_STATUS = 0
QUICK_STEP = "{key: quick, kind: sleep, with: {seconds: 0.05}}"


async def _schema_behind_is_unready(api: Server, url: str) -> None:
    """A database put back behind this code's migrations (an older backup restored) is 503."""
    connection = await asyncpg.connect(url)
    try:
        latest = await connection.fetchrow(
            "DELETE FROM migration WHERE id = (SELECT MAX(id) FROM migration) RETURNING *"
        )
        try:
            async with httpx.AsyncClient() as client:
                async with asyncio.timeout(15):
                    while (response := await client.get(f"{api.url}/ready")).status_code != 503:
                        await asyncio.sleep(0.1)
            assert response.json()["components"]["migrations"] == {
                "up": False,
                "reason": "1 migration(s) not applied: run `runwire migrate`",
            }
        finally:
            await connection.execute(
                "INSERT INTO migration (id, name, app_name, ran_on) VALUES ($1, $2, $3, $4)",
                *latest.values(),
            )
    finally:
        await connection.close()
    ready = await _ready_when(api, lambda body: body["ready"])
    assert ready["components"]["migrations"] == {"up": True}
    log = api.log.read_text()
    assert (
        log.count(
            "health: the database is behind this version's migrations (1 migration(s) not applied:"
            " run `runwire migrate`)"
        )
        == 1
    ), log
    assert log.count("health: the database has this version's migrations again") == 1, log


async def _ready(server: Server, status: int = 200) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/ready", timeout=5)
    assert status in (ANY_STATUS, response.status_code), response.text
    body: dict[str, Any] = response.json()
    assert response.status_code == (200 if body["ready"] else 503)
    return body


async def _ready_when(
    server: Server, condition: Callable[[dict[str, Any]], bool], timeout: float = 15
) -> dict[str, Any]:
    """/ready's body once `condition` holds of it (checks run every second)."""
    async with asyncio.timeout(timeout):
        while not condition(body := await _ready(server, status=ANY_STATUS)):
            await asyncio.sleep(0.1)
    return body


@pytest.mark.parametrize("command", ["worker", "serve"])
@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("RUNWIRE_PORT", "eighty", "Error: RUNWIRE_PORT: expected a number, got 'eighty'"),
        (
            "RUNWIRE_LEASE_SECONDS",
            "2",
            "Error: RUNWIRE_LEASE_SECONDS must be at least 3 x RUNWIRE_HEARTBEAT_SECONDS (a"
            " runner gives up 2 heartbeats before its lease ends)",
        ),
    ],
)
def test_a_bad_setting_ends_in_one_line(
    command: str, setting: str, value: str, message: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env |= {"RUNWIRE_DATA_DIR": str(tmp_path), setting: value}
    done = subprocess.run(
        [sys.executable, "-m", "runwire.cli", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [message]
    assert done.stdout == ""


async def _owner_pid(url: str, execution_id: str, wait: float = 15) -> int | None:
    """The process id in the owner the database records for the execution (host:pid:nonce).

    Waits up to `wait` seconds for an owner to appear; None if there is none then.
    """
    connection = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + wait
        while True:
            owner = await connection.fetchval(
                "SELECT owner FROM runwire_execution WHERE id = $1", execution_id
            )
            if owner is not None:
                return int(owner.rsplit(":", 2)[1])
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
