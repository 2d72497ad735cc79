"""A command that ends on its own just as its runner gives its steps up (the database out of
reach for L - 2H) finished: it is recorded as finished, once, and never run again.

The moment is held open with real parts: the execution's row (and the artifact table) locked
from the test, so the runner can neither renew its lease nor store its events and artifacts,
and the step's reaper paused (SIGSTOP), so the command's exit is on its way to the server when
the runner gives up. One in-process runner on Postgres, lease 1.5 s, heartbeat 0.25 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from tests.support import postgres

from runwire.core import Core
from runwire.db.engine import Database
from runwire.domain.access import Actor, Role
from runwire.domain.executions import StartRequest
from runwire.domain.models import Execution, ExecutionStatus
from runwire.settings import Settings

ACTOR = Actor(workspace_id="workspace-a", label="test", role=Role.EDITOR)
# Gives its steps up 1 s after its last renewal.
LEASE = {"lease_seconds": 1.5, "heartbeat_seconds": 0.25}
_SIGINT_AND_SIGTERM = 1 << (signal.SIGINT - 1) | 1 << (signal.SIGTERM - 1)


@contextlib.asynccontextmanager
async def _core(url: str, data: Path) -> AsyncIterator[Core]:
    config = Settings(
        database_url=url,
        bus_url=f"memory://{uuid.uuid4().hex}",
        data_dir=data,
        load_examples=False,
        poll_seconds=0.05,
        step_user="",  # steps as the test's user: see OWN_USER_STEPS in tests/support/server.py
        **LEASE,
    )
    async with Database.open(url, migrate=True):
        pass
    async with Core.running(config) as core:
        yield core


async def _start(core: Core, script: str, grace_seconds: float | None = None) -> str:
    step = {
        "key": "a",
        "kind": "shell",
        "on_runner_lost": "retry",
        "with": {"argv": ["sh", "-c", script]},
    }
    started = await core.executions.start(
        StartRequest(
            definition=json.dumps({"name": "ends", "steps": [step]}), grace_seconds=grace_seconds
        ),
        ACTOR,
    )
    return started.id


@contextlib.asynccontextmanager
async def _unreachable(url: str, execution_id: str) -> AsyncIterator[None]:
    """For the block, this execution's lease cannot be renewed, nor its events or artifacts
    stored: its row and the artifact table are locked (its writes wait, renewals time out)."""
    connection = await asyncpg.connect(url)
    try:
        locking = connection.transaction()
        await locking.start()
        await connection.execute("LOCK TABLE runwire_artifact IN SHARE MODE")
        await connection.execute(
            "SELECT 1 FROM runwire_execution WHERE id = $1 FOR UPDATE", execution_id
        )
        try:
            yield
        finally:
            await locking.rollback()
    finally:
        await connection.close()


async def _until(what: str, check: Any, timeout: float = 10) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not {what} within {timeout}s") from None


def _given_up(core: Core, execution_id: str) -> bool:
    assert core.runner is not None
    run = core.runner._runs.get(execution_id)  # white box: the run, before it is over
    return run is not None and run.abandoned is not None


def _over(core: Core, execution_id: str) -> bool:
    assert core.runner is not None
    return execution_id not in core.runner._runs


async def _final(core: Core, execution_id: str) -> Execution:
    async with asyncio.timeout(15):
        while True:
            found = await core.store.executions.execution(execution_id, workspace=None)
            assert found is not None
            if found.status.is_terminal and found.owner is None:
                return found
            await asyncio.sleep(0.02)


def _process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def _pending_signals(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("ShdPnd:"):
            return int(line.split()[1], 16)
    return 0


async def test_a_command_whose_exit_is_on_its_way_at_the_give_up_is_not_run_again(
    tmp_path: Path,
) -> None:
    gate, marker, pids = tmp_path / "gate", tmp_path / "marker", tmp_path / "pids"
    script = (
        f"echo $$ $PPID > {pids}.tmp && mv {pids}.tmp {pids};"
        f" until [ -e {gate} ]; do sleep 0.01; done; echo done >> {marker}"
    )
    async with postgres.fresh_database() as url, _core(url, tmp_path / "data") as core:
        execution_id = await _start(core, script)
        await _until("started", pids.exists)
        command, reaper = (int(pid) for pid in pids.read_text().split())
        os.kill(reaper, signal.SIGSTOP)  # it cannot tell the server the command exited
        try:
            gate.touch()
            await _until("exited", lambda: _process_state(command) == "Z")
            assert marker.read_text() == "done\n"
            async with _unreachable(url, execution_id):
                await _until("given up", lambda: _given_up(core, execution_id))
                # The give-up's stop (SIGINT, then SIGTERM: no grace) reached the paused reaper.
                await _until(
                    "stopped",
                    lambda: _pending_signals(reaper) & _SIGINT_AND_SIGTERM == _SIGINT_AND_SIGTERM,
                )
                os.kill(reaper, signal.SIGCONT)
                await _until("over", lambda: _over(core, execution_id))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(reaper, signal.SIGCONT)
        final = await _final(core, execution_id)
    assert marker.read_text() == "done\n"  # it ran once
    assert final.status is ExecutionStatus.SUCCEEDED
    assert [(s.attempt, s.status, s.exit_code) for s in final.steps] == [(1, "SUCCEEDED", 0)]


async def test_a_command_ended_while_its_reports_are_stored_at_the_give_up_is_not_run_again(
    tmp_path: Path,
) -> None:
    gate, marker = tmp_path / "gate", tmp_path / "marker"
    record = json.dumps({"type": "artifact", "name": "report.txt", "text": "all good"})
    script = f"until [ -e {gate} ]; do sleep 0.01; done; echo '{record}' >&3; echo done >> {marker}"
    async with postgres.fresh_database() as url, _core(url, tmp_path / "data") as core:
        execution_id = await _start(core, script)
        await _until("running", lambda: execution_id in (core.runner._runs if core.runner else {}))
        async with _unreachable(url, execution_id):
            gate.touch()  # it ends; its artifact waits for the database
            # Only giving up ends the run now: its step waits for the artifact to be stored.
            await _until("given up", lambda: _over(core, execution_id))
        final = await _final(core, execution_id)
    assert marker.read_text() == "done\n"  # it ran once
    assert final.status is ExecutionStatus.SUCCEEDED
    assert [(s.attempt, s.status, s.exit_code) for s in final.steps] == [(1, "SUCCEEDED", 0)]
