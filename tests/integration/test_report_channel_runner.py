"""Report channel records through the real runner and store: priced usage, budgets, outputs.

Each test runs shell steps whose scripts write records to descriptor 3, on SQLite and Postgres,
and reads what was stored: events, step results, assertions.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.support import postgres

from runwire.core import Core
from runwire.db.engine import Database
from runwire.domain.access import Actor, Role
from runwire.domain.executions import StartRequest
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus
from runwire.settings import Settings

WORKSPACE = "workspace-a"
ACTOR = Actor(workspace_id=WORKSPACE, label="test", role=Role.EDITOR)


@pytest.fixture(params=["sqlite", "postgres"])
async def core(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Core]:
    if request.param == "sqlite":
        async with _core(f"sqlite:///{tmp_path / 'runner.sqlite'}", tmp_path) as found:
            yield found
        return
    async with postgres.fresh_database() as url, _core(url, tmp_path) as found:
        yield found


class _core:
    def __init__(self, url: str, data: Path) -> None:
        self.url, self.data = url, data
        self.running: Any = None

    async def __aenter__(self) -> Core:
        config = Settings(
            database_url=self.url,
            bus_url=f"memory://{uuid.uuid4().hex}",
            data_dir=self.data,
            load_examples=False,
            poll_seconds=0.05,
            step_user="",  # the test's user: see OWN_USER_STEPS in tests/support/server.py
        )
        async with Database.open(self.url, migrate=True):
            pass
        self.running = Core.running(config)
        core: Core = await self.running.__aenter__()
        return core

    async def __aexit__(self, *exc: Any) -> None:
        await self.running.__aexit__(*exc)


def report(*records: dict[str, Any]) -> str:
    """A shell step whose command writes `records` to the report channel with printf."""
    lines = "".join(f"printf '%s\\n' '{json.dumps(record)}' >&3\n" for record in records)
    return json.dumps({"shell": True, "command": lines})


async def run(core: Core, definition: str) -> tuple[Execution, list[Event]]:
    started = await core.executions.start(StartRequest(definition=definition), ACTOR)
    async with asyncio.timeout(20):
        while True:
            execution = await core.store.executions.execution(started.id, workspace=WORKSPACE)
            assert execution is not None
            if execution.status.is_terminal and execution.owner is None:
                break
            await asyncio.sleep(0.02)
    return execution, await core.store.events.events(started.id, 0)


def of_type(events: list[Event], type: EventType) -> list[Event]:
    return [event for event in events if event.type is type]


FAKE = {"type": "usage", "model": "runwire-fake-1", "input_tokens": 1000, "output_tokens": 500}
"""Priced by the shipped table at $1 and $4 per million tokens: $0.003."""


async def test_usage_is_priced_totalled_and_checked_by_expect(core: Core) -> None:
    explicit = {"type": "usage", "model": "my-own", "input_tokens": 10, "output_tokens": 5}
    definition = f"""
name: reported
steps:
  - key: agent
    kind: shell
    with: {report(FAKE, {**explicit, "cost_usd": 0.25})}
    expect: {{cost_usd_below: 0.5, tokens_below: 2000}}
  - key: over
    kind: shell
    with: {report(FAKE)}
    expect: {{cost_usd_below: 0.001}}
"""
    execution, events = await run(core, definition)
    assert execution.status is ExecutionStatus.FAILED
    usage = of_type(events, EventType.USAGE)
    assert [(event.step_key, event.data["model"], event.data["cost_usd"]) for event in usage] == [
        ("agent", "runwire-fake-1", pytest.approx(0.003)),
        ("agent", "my-own", 0.25),
        ("over", "runwire-fake-1", pytest.approx(0.003)),
    ]
    assert usage[0].data["price_source"] == "runwire fake-llm (not a real price) (2026-12-02)"
    assert usage[1].data["step_totals"]["cost_usd"] == pytest.approx(0.253)
    assert usage[2].data["execution_totals"]["tokens_input"] == 2010
    agent, over = execution.steps
    assert (agent.status, over.status) == ("SUCCEEDED", "FAILED")
    assert agent.attributes["tokens_input"] == 1010
    assert agent.attributes["cost_usd"] == pytest.approx(0.253)
    assert over.error == "expect.cost_usd_below: expected below $0.001, cost $0.003000"


async def test_reported_usage_over_the_budget_stops_the_step(core: Core) -> None:
    script = f"printf '%s\\n' '{json.dumps(FAKE)}' >&3; echo reported; sleep 30"
    definition = f"""
name: spender
steps:
  - key: spend
    kind: shell
    budget: {{max_cost_usd: 0.002}}
    with: {json.dumps({"shell": True, "command": script})}
"""
    execution, events = await run(core, definition)
    assert execution.status is ExecutionStatus.FAILED
    (step,) = execution.steps
    assert step.status == "FAILED"
    assert step.error == "budget exceeded: $0.003000 > $0.002000"
    assert len(of_type(events, EventType.USAGE)) == 1


async def test_named_outputs_reach_a_downstream_template(core: Core) -> None:
    outputs = report(
        {"type": "output", "name": "version", "value": "1.2.3"},
        {"type": "output", "name": "files", "value": ["a", "b"]},
    )
    # A template alone keeps its value's type; inside text it renders as text.
    command = "echo {{ steps.build.output.version }} {{ steps.build.output.files | join(',') }}"
    downstream = json.dumps(
        {"shell": True, "command": command + " {{ steps.build.output.exit_code }}"}
    )
    definition = f"""
name: pipeline
steps:
  - {{key: build, kind: shell, with: {outputs}}}
  - {{key: deploy, kind: shell, with: {downstream}}}
"""
    execution, _ = await run(core, definition)
    assert execution.status is ExecutionStatus.SUCCEEDED, execution.error
    build, deploy = execution.steps
    assert build.output["version"] == "1.2.3"
    assert deploy.output["stdout"] == "1.2.3 a,b 0\n"


async def test_garbage_records_are_counted_in_the_log_and_the_step_succeeds(core: Core) -> None:
    command = (
        'echo \'oops\' >&3; echo \'{"type":"usage","input_tokens":1.5,"output_tokens":1}\' >&3;'
        f" printf '%s\\n' '{json.dumps(FAKE)}' >&3"
    )
    definition = f"""
name: messy
steps:
  - {{key: s, kind: shell, with: {json.dumps({"shell": True, "command": command})}}}
"""
    execution, events = await run(core, definition)
    assert execution.status is ExecutionStatus.SUCCEEDED
    assert len(of_type(events, EventType.USAGE)) == 1
    log = [
        event.data["text"]
        for event in of_type(events, EventType.OUTPUT)
        if event.data["stream"] == "log"
    ]
    assert log == [
        "report channel: ignored 2 of 3 records (1 not JSON, 1 bad field); the first, record 1:"
        " not JSON: JSON is malformed: invalid character (byte 0)"
    ]
