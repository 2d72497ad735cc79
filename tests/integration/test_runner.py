"""The runner against a real database: faults in step code, and executions of a dead runner."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.support import postgres

from runwire.core import Core
from runwire.db import tables
from runwire.db.engine import Database
from runwire.domain.access import Actor, Role
from runwire.domain.clock import utc_now
from runwire.domain.executions import StartRequest
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus
from runwire.runner import runner as runner_module
from runwire.runner.steps import step_kinds
from runwire.runner.steps.base import StepContext, StepResult
from runwire.settings import Settings

# Every row these tests write belongs to one workspace; an editor may start inline commands.
WORKSPACE = "workspace-a"
ACTOR = Actor(workspace_id=WORKSPACE, label="test", role=Role.EDITOR)


class ExplodingStep:
    """A deliberately defective step kind: its run() raises, as a bug in step code would."""

    name = "explode"

    def parse(self, params: Any, path: str) -> Any:
        return params

    def idempotent(self, params: Any) -> bool:
        return False

    async def run(self, params: Any, context: StepContext) -> StepResult:
        raise RuntimeError("boom")


@contextlib.asynccontextmanager
async def _core(url: str, data: Path, **settings: Any) -> AsyncIterator[Core]:
    """A process's core on `url`, with the defective kind besides the shipped ones."""
    config = Settings(
        database_url=url,
        bus_url=f"memory://{uuid.uuid4().hex}",
        data_dir=data,
        load_examples=False,
        poll_seconds=0.05,
        step_user="",  # steps as the test's user: see OWN_USER_STEPS in tests/support/server.py
        **settings,
    )
    async with Database.open(url, migrate=True):
        pass  # as `runwire migrate` does before a server starts on Postgres
    async with Core.running(config, {**step_kinds(config), "explode": ExplodingStep()}) as core:
        yield core


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runner.sqlite'}"
        return
    async with postgres.fresh_database() as found:
        yield found


async def _final(core: Core, execution_id: str) -> Any:
    async with asyncio.timeout(10):
        while True:
            execution = await core.store.executions.execution(execution_id, workspace=WORKSPACE)
            assert execution is not None
            # Settled: ended, and released by its runner.
            if execution.status.is_terminal and execution.owner is None:
                return execution
            await asyncio.sleep(0.02)


async def test_a_crashing_step_fails_its_execution_and_the_runner_goes_on(
    url: str, tmp_path: Path
) -> None:
    async with _core(url, tmp_path) as core:
        broken = await core.executions.start(
            StartRequest(definition="name: b\nsteps: [{key: bang, kind: explode}]"), ACTOR
        )
        failed = await _final(core, broken.id)
        assert failed.status is ExecutionStatus.FAILED
        assert "internal error in step kind explode: RuntimeError('boom')" in failed.error
        assert failed.steps[0].status == "FAILED"

        healthy = await core.executions.start(
            StartRequest(definition="name: h\nsteps: [{key: a, kind: sleep, with: {seconds: 0}}]"),
            ACTOR,
        )
        assert (await _final(core, healthy.id)).status is ExecutionStatus.SUCCEEDED


async def test_a_large_definition_is_parsed_in_a_thread_and_runs(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past _ON_LOOP_STEPS steps the runner parses a claimed definition off the event loop.
    threads: list[str] = []
    parse = runner_module.parse_definition

    def recording(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return parse(*args)

    monkeypatch.setattr(runner_module, "parse_definition", recording)
    steps = ", ".join(f"{{key: s{n}, kind: sleep, with: {{seconds: 0}}}}" for n in range(60))
    async with _core(url, tmp_path) as core:
        started = await core.executions.start(
            StartRequest(definition=f"name: large\nsteps: [{steps}]"), ACTOR
        )
        final = await _final(core, started.id)
    assert final.status is ExecutionStatus.SUCCEEDED
    assert len(final.steps) == 60
    assert threads
    assert threading.main_thread().name not in threads


async def _orphan(core: Core, kind: str, with_: dict[str, Any], **step: Any) -> str:
    """A row as a crashed process leaves it: RUNNING, step `a` RUNNING, lease long expired."""
    orphan = Execution(
        workspace_id=WORKSPACE,
        id=str(uuid.uuid4()),
        status=ExecutionStatus.RUNNING,
        definition={"name": "o", "steps": [{"key": "a", "kind": kind, "with": with_, **step}]},
        inputs={},
        queued_at=utc_now(),
    )
    first = Event(orphan.id, 1, utc_now(), EventType.EXECUTION_STATUS, {"status": "QUEUED"})
    await core.store.executions.create_execution(orphan, first)
    running = {"status": "RUNNING", "kind": kind, "position": 0}
    await core.store.events.append(
        [
            Event(orphan.id, 2, utc_now(), EventType.EXECUTION_STATUS, {"status": "RUNNING"}),
            Event(orphan.id, 3, utc_now(), EventType.STEP_STATUS, running, "a", 1),
        ]
    )
    await tables.Execution.update(
        {
            tables.Execution.owner: "dead-runner",
            tables.Execution.lease_expires_at: utc_now() - timedelta(seconds=60),
        }
    ).where(tables.Execution.id == orphan.id)
    return orphan.id


# A lease of 0.4 s renewed every 0.1 s: a lost runner is noticed in well under a second here.
FAST_LEASE = {"lease_seconds": 0.4, "heartbeat_seconds": 0.1}


async def test_a_dead_runners_execution_is_resumed_at_the_interrupted_step(
    url: str, tmp_path: Path
) -> None:
    async with _core(url, tmp_path, **FAST_LEASE) as core:
        orphan = await _orphan(core, "sleep", {"seconds": 0})  # idempotent: retried
        final = await _final(core, orphan)
        assert final.status is ExecutionStatus.SUCCEEDED
        assert [(s.attempt, s.status, s.error) for s in final.steps] == [
            (1, "FAILED", "its runner was lost (dead-runner)"),
            (2, "SUCCEEDED", None),
        ]
        events = await core.store.events.events(orphan, 0)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        resumed = events[4]  # after the lost attempt's FAILED (seq 4)
        assert resumed.data == {"status": "RUNNING", "reason": "resumed: runner lost"}


async def test_a_step_that_must_not_run_twice_fails_its_execution(url: str, tmp_path: Path) -> None:
    async with _core(url, tmp_path, **FAST_LEASE) as core:
        orphan = await _orphan(core, "shell", {"argv": ["true"]})  # not idempotent: fails
        final = await _final(core, orphan)
        assert final.status is ExecutionStatus.FAILED
        assert final.error == "step a interrupted: runner lost (on_runner_lost: fail)"
        assert [(s.attempt, s.status) for s in final.steps] == [(1, "FAILED")]


async def test_on_runner_lost_retry_reruns_even_a_command(url: str, tmp_path: Path) -> None:
    async with _core(url, tmp_path, **FAST_LEASE) as core:
        orphan = await _orphan(core, "shell", {"argv": ["true"]}, on_runner_lost="retry")
        final = await _final(core, orphan)
        assert final.status is ExecutionStatus.SUCCEEDED
        assert [(s.attempt, s.status) for s in final.steps] == [(1, "FAILED"), (2, "SUCCEEDED")]


async def test_a_run_whose_lease_is_taken_over_stops_and_writes_nothing_more(
    url: str, tmp_path: Path
) -> None:
    gate, marker = tmp_path / "gate", tmp_path / "finished"
    script = f"until [ -e {gate} ]; do sleep 0.02; done; touch {marker}"
    async with _core(url, tmp_path, **FAST_LEASE) as core:
        execution = await core.executions.start(
            StartRequest(
                definition="name: f\nsteps: [{key: a, kind: shell,"
                f" with: {{argv: [sh, -c, '{script}']}}}}]"
            ),
            ACTOR,
        )
        async with asyncio.timeout(10):
            while not (await core.store.executions.steps(execution.id)):
                await asyncio.sleep(0.02)
        # Another runner takes it over (as after an expired lease): a new owner and generation.
        await tables.Execution.update(
            {
                tables.Execution.owner: "runner-b",
                tables.Execution.lease_generation: tables.Execution.lease_generation + 1,
            }
        ).where(tables.Execution.id == execution.id)
        before = [e.seq for e in await core.store.events.events(execution.id, 0)]
        # The next heartbeats find the lease gone: the run is abandoned and its step stopped.
        # Wait until the run is over (its step's processes are gone, white box), not only
        # abandoned: a gate opened while the kill is under way would let the step finish.
        async with asyncio.timeout(10):
            while core.runner._runs:
                await asyncio.sleep(0.02)
        gate.touch()
        await asyncio.sleep(0.5)
        assert not marker.exists()  # killed before it could finish, with its lease gone
        after = await core.store.events.events(execution.id, 0)
        assert [e.seq for e in after] == before, after
