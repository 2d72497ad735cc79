"""The runner against a real database: faults in step code, and executions of a dead runner."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.support import postgres

from runwire.db import tables
from runwire.db.engine import Database
from runwire.db.repository import Repository
from runwire.domain.access import Actor, Role
from runwire.domain.clock import utc_now
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus
from runwire.domain.services import ExecutionService, StartRequest
from runwire.events.bus import Bus
from runwire.events.hub import Hub
from runwire.events.log import EventLog
from runwire.runner.runner import Runner
from runwire.runner.steps import STEP_KINDS
from runwire.runner.steps.base import StepContext, StepResult
from runwire.settings import Settings

# Every row these tests write belongs to one workspace.
WORKSPACE = "workspace-a"
ACTOR = Actor(workspace_id=WORKSPACE, label="test", role=Role.OPERATOR)


class ExplodingStep:
    """A deliberately defective step kind: its run() raises, as a bug in step code would."""

    name = "explode"

    def parse(self, params: Any, path: str) -> Any:
        return params

    async def run(self, params: Any, context: StepContext) -> StepResult:
        raise RuntimeError("boom")


@dataclass
class Stack:
    repository: Repository
    service: ExecutionService
    runner: Runner


@contextlib.asynccontextmanager
async def _stack(url: str, **settings: Any) -> AsyncIterator[Stack]:
    kinds = {**STEP_KINDS, "explode": ExplodingStep()}
    config = Settings(poll_seconds=0.05, **settings)
    async with (
        Database.open(url, migrate=True) as database,
        Bus.connect("memory://") as bus,
    ):
        repository = Repository(database)
        async with (
            Hub.running(repository, bus, 64) as hub,
            EventLog.running(repository, bus, hub.deliver, 0.002) as log,
            Runner.running(repository, log, kinds, config) as runner,
        ):
            service = ExecutionService(repository, kinds, runner.wake, log.announce)
            yield Stack(repository, service, runner)


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runner.sqlite'}"
        return
    async with postgres.fresh_database() as found:
        yield found


async def _final(repository: Repository, execution_id: str) -> Any:
    async with asyncio.timeout(10):
        while True:
            execution = await repository.execution(execution_id, workspace=WORKSPACE)
            assert execution is not None
            if execution.status.is_terminal:
                return execution
            await asyncio.sleep(0.02)


async def test_a_crashing_step_fails_its_execution_and_the_runner_goes_on(url: str) -> None:
    async with _stack(url) as stack:
        broken = await stack.service.start(
            StartRequest(definition="name: b\nsteps: [{key: bang, kind: explode}]"), ACTOR
        )
        failed = await _final(stack.repository, broken.id)
        assert failed.status is ExecutionStatus.FAILED
        assert "internal error in step kind explode: RuntimeError('boom')" in failed.error
        assert failed.steps[0].status == "FAILED"

        healthy = await stack.service.start(
            StartRequest(definition="name: h\nsteps: [{key: a, kind: sleep, with: {seconds: 0}}]"),
            ACTOR,
        )
        assert (await _final(stack.repository, healthy.id)).status is ExecutionStatus.SUCCEEDED


async def test_executions_of_a_dead_runner_are_taken_over(url: str) -> None:
    async with _stack(url, lease_seconds=0.3) as stack:
        # A row as a crashed process leaves it: RUNNING, owned, lease expired, seqs 1..2.
        orphan = Execution(
            workspace_id=WORKSPACE,
            id=str(uuid.uuid4()),
            status=ExecutionStatus.RUNNING,
            definition={
                "name": "o",
                "steps": [{"key": "a", "kind": "sleep", "with": {"seconds": 1}}],
            },
            inputs={},
            queued_at=utc_now(),
        )
        first = Event(orphan.id, 1, utc_now(), EventType.EXECUTION_STATUS, {"status": "QUEUED"})
        await stack.repository.create_execution(orphan, first)
        await stack.repository.append_events(
            [Event(orphan.id, 2, utc_now(), EventType.EXECUTION_STATUS, {"status": "RUNNING"})]
        )
        await tables.Execution.update(
            {
                tables.Execution.owner: "dead-runner",
                tables.Execution.lease_expires_at: utc_now() - timedelta(seconds=1),
            }
        ).where(tables.Execution.id == orphan.id)

        final = await _final(stack.repository, orphan.id)
        assert final.status is ExecutionStatus.FAILED
        assert final.error == "its runner stopped (lease expired)"
        events = await stack.repository.events(orphan.id, 0)
        assert [e.seq for e in events] == [1, 2, 3]
