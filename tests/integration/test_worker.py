"""`runwire worker`: runs what an API-only server queues, answers probes, drains on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support import postgres
from tests.support.graphql import definition, follow, gated_step, start, wait_for_status
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


def test_health_and_ready_answer_and_nothing_else_does(
    api_and_worker: tuple[str, Server, Server],
) -> None:
    _, _, worker = api_and_worker
    health = httpx.get(f"{worker.url}/health", timeout=5)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "followers": 0, "down": []}
    ready = httpx.get(f"{worker.url}/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "components": {"database": {"up": True}, "bus": {"up": True}},
    }
    for path in ("/graphql", "/executions/x/events", "/schema", "/"):
        assert httpx.get(f"{worker.url}{path}", timeout=5).status_code == 404, path


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
