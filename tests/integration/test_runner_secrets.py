"""The runner gives a step the secrets it names and masks their values in all it reports.

A step kind of the test's own reports a secret value every way a step can (output in pieces,
a span, its result and error, a crash), on SQLite and Postgres; nothing stored or logged
may hold the value.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.support import postgres

from runwire.core import Core
from runwire.db.engine import Database
from runwire.domain.access import Actor, Role
from runwire.domain.clock import utc_now
from runwire.domain.executions import StartRequest
from runwire.domain.models import Execution, ExecutionStatus, OutputStream
from runwire.runner.redaction import MASK
from runwire.runner.steps import STEP_KINDS
from runwire.runner.steps.base import StepContext, StepResult
from runwire.settings import Settings

WORKSPACE_NAME = "default"
VALUE = "p4ss-w0rd-value"


class RevealingStep:
    """Reports the value of every secret it was given, in every way a step can."""

    name = "reveal"
    runs_processes = False

    def parse(self, params: Any, path: str) -> Any:
        return params

    def idempotent(self, params: Any) -> bool:
        return False

    async def run(self, params: Any, context: StepContext) -> StepResult:
        names = sorted(context.secrets)
        context.output(OutputStream.LOG, f"names={','.join(names)}\n")
        for value in context.secrets.values():
            # Split across pieces and streams, as a process's reads split it.
            context.output(OutputStream.STDOUT, "key=" + value[:4])
            await asyncio.sleep(0.02)
            context.output(OutputStream.STDERR, value[:6])
            context.output(OutputStream.STDOUT, value[4:] + "\n")
            context.output(OutputStream.STDERR, value[6:])
            now = utc_now()
            context.span("auth", "tool", now, now, "OK", {"header": f"Bearer {value}"})
            if params.get("crash"):
                raise RuntimeError(f"crashed holding {value}")
            return StepResult(
                output={"seen": value, "names": names},
                error=f"refused {value}" if params.get("fail") else None,
                attributes={"echo": value},
            )
        return StepResult(output={"names": names})


@contextlib.asynccontextmanager
async def running_core(url: str, data: Path) -> AsyncIterator[Core]:
    settings = Settings(
        database_url=url,
        bus_url=f"memory://{uuid.uuid4().hex}",
        data_dir=data,
        load_examples=False,
        poll_seconds=0.05,
    )
    async with Database.open(url, migrate=True):
        pass
    async with Core.running(settings, {**STEP_KINDS, "reveal": RevealingStep()}) as core:
        yield core


@pytest.fixture(params=["sqlite", "postgres"])
async def core(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Core]:
    if request.param == "sqlite":
        async with running_core(f"sqlite:///{tmp_path / 'r.sqlite'}", tmp_path) as found:
            yield found
        return
    async with postgres.fresh_database() as url, running_core(url, tmp_path) as found:
        yield found


async def admin_of(core: Core) -> Actor:
    workspace = await core.store.access.workspace(WORKSPACE_NAME)
    assert workspace is not None
    return Actor(workspace_id=workspace.id, label="test", role=Role.ADMIN)


async def settled(core: Core, actor: Actor, execution_id: str) -> Execution:
    async with asyncio.timeout(10):
        while True:
            found = await core.store.executions.execution(
                execution_id, workspace=actor.workspace_id
            )
            assert found is not None
            if found.status.is_terminal and found.owner is None:
                return found
            await asyncio.sleep(0.02)


def definition(*steps: str) -> str:
    return "name: reveal\nsteps:\n" + "".join(f"  - {step}\n" for step in steps)


async def test_a_step_gets_its_secrets_and_nothing_it_reports_holds_them(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    actor = await admin_of(core)
    await core.secrets.set(actor, "API_KEY", VALUE)
    await core.secrets.set(actor, "UNUSED", "never-given")
    text = definition(
        "{key: uses, kind: reveal, secrets: [API_KEY], with: {fail: true},"
        " continue_on_failure: true}",
        "{key: after, kind: reveal, with: {}}",
        "{key: crash, kind: reveal, secrets: [API_KEY], with: {crash: true}}",
    )
    with caplog.at_level(logging.DEBUG):
        started = await core.executions.start(StartRequest(definition=text), actor)
        execution = await settled(core, actor, started.id)
    assert execution.status is ExecutionStatus.FAILED

    events = await core.store.events.events(execution.id, 0)
    stored = json.dumps([[event.type, event.step_key, event.data] for event in events])
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for place in (stored, logged, json.dumps(execution.error), repr(execution.steps)):
        assert VALUE not in place
        assert "p4ss" not in place  # no piece of it either
        assert "-value" not in place

    def text_of(step: str, stream: str) -> str:
        return "".join(
            e.data["text"]
            for e in events
            if e.type == "OUTPUT" and e.step_key == step and e.data["stream"] == stream
        )

    assert text_of("uses", "log") == "names=API_KEY\n"
    assert text_of("uses", "stdout") == f"key={MASK}\n"
    assert text_of("uses", "stderr") == MASK
    assert text_of("after", "log") == "names=\n"  # a step that names none gets none
    spans = [e.data for e in events if e.type == "SPAN"]
    assert [span["attributes"]["header"] for span in spans] == [f"Bearer {MASK}"] * 2

    steps = {run.key: run for run in execution.steps}
    assert steps["uses"].output == {"seen": MASK, "names": ["API_KEY"]}
    assert steps["uses"].error == f"refused {MASK}"
    assert steps["uses"].attributes == {"echo": MASK}
    assert steps["after"].output == {"names": []}
    assert (
        steps["crash"].error
        == "internal error in step kind reveal: RuntimeError('crashed holding ***')"
    )
    assert "crashed holding ***" in logged  # the crash is logged, redacted, traceback and all


async def test_a_secret_deleted_after_the_start_fails_the_step_that_names_it(core: Core) -> None:
    actor = await admin_of(core)
    await core.secrets.set(actor, "API_KEY", VALUE)
    text = definition(
        "{key: wait, kind: sleep, with: {seconds: 0.3}}",
        "{key: uses, kind: reveal, secrets: [API_KEY], with: {}}",
    )
    started = await core.executions.start(StartRequest(definition=text), actor)
    await core.secrets.delete(actor, "API_KEY")
    execution = await settled(core, actor, started.id)
    assert execution.status is ExecutionStatus.FAILED
    steps = {run.key: run for run in execution.steps}
    assert steps["uses"].error == "secret API_KEY is not set in this workspace"
    assert execution.started_at is not None
    assert execution.finished_at is not None
    assert execution.finished_at - execution.started_at < timedelta(seconds=5)
