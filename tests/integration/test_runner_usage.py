"""Usage a step reports, priced and summed as it arrives, and budgets that stop what crosses them.

The step kind here is a test kind written to the StepKind protocol, as any shipped kind is: it
reports the usage and entries its `with` lists, in order, waiting for the runner between them.
The runner, the price table, the event log and the database are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.support import postgres

from runwire.core import Core
from runwire.db.engine import Database
from runwire.domain.access import Actor, Role
from runwire.domain.agents import AgentEntry, EntryType, Usage
from runwire.domain.executions import StartRequest
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus, OutputStream
from runwire.runner.steps import step_kinds
from runwire.runner.steps.base import Observed, StepContext, StepResult
from runwire.settings import Settings

WORKSPACE = "workspace-a"
ACTOR = Actor(workspace_id=WORKSPACE, label="test", role=Role.EDITOR)
# runner/prices.yaml prices runwire-fake-* at $1 per million input tokens, $4 per million output.
MODEL = "runwire-fake-1"


class ReportingStep:
    """Reports `with.reports` one by one: {input, output} usage, or {entry, text} entries."""

    name = "reporting"
    runs_processes = False

    def __init__(self) -> None:
        self.reported: list[int] = []

    def parse(self, params: Any, path: str) -> Any:
        return params

    def idempotent(self, params: Any) -> bool:
        return True

    async def run(self, params: Any, context: StepContext) -> StepResult:
        for index, report in enumerate(params["reports"]):
            await asyncio.sleep(0)  # a budget crossed by the last report cancels the step here
            self.reported.append(index)
            if "entry" in report:
                context.output(OutputStream.STDOUT, f"before entry {index}\n")
                context.entry(AgentEntry(EntryType(report["entry"]), text=report.get("text")))
            else:
                context.usage(Usage(report.get("model", MODEL), report["input"], report["output"]))
        return StepResult(output={"done": True}, observed=Observed(text="done"))


@contextlib.asynccontextmanager
async def _core(url: str, data: Path, kind: ReportingStep) -> AsyncIterator[Core]:
    config = Settings(
        database_url=url,
        bus_url=f"memory://{uuid.uuid4().hex}",
        data_dir=data,
        load_examples=False,
        poll_seconds=0.05,
        step_user="",
    )
    async with Database.open(url, migrate=True):
        pass
    async with Core.running(config, {**step_kinds(config), kind.name: kind}) as core:
        yield core


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runner.sqlite'}"
        return
    async with postgres.fresh_database() as found:
        yield found


async def _run(core: Core, definition: str) -> tuple[Execution, list[Event]]:
    started = await core.executions.start(StartRequest(definition=definition), ACTOR)
    async with asyncio.timeout(10):
        while True:
            execution = await core.store.executions.execution(started.id, workspace=WORKSPACE)
            assert execution is not None
            if execution.status.is_terminal and execution.owner is None:
                break
            await asyncio.sleep(0.02)
    events = await core.store.events.events(started.id, 0)
    return execution, events


def _million(input: int = 0, output: int = 0) -> str:
    return f"{{input: {input * 1_000_000}, output: {output * 1_000_000}}}"


async def test_usage_is_priced_and_summed_per_step_and_execution_as_it_arrives(
    url: str, tmp_path: Path
) -> None:
    kind = ReportingStep()
    definition = f"""
name: priced
steps:
  - {{key: a, kind: reporting, with: {{reports: [{_million(1)}, {_million(0, 1)}]}}}}
  - {{key: b, kind: reporting, with: {{reports: [{{model: mystery, input: 5, output: 5}}]}}}}
"""
    async with _core(url, tmp_path, kind) as core:
        execution, events = await _run(core, definition)
    assert execution.status is ExecutionStatus.SUCCEEDED
    usage = [event.data for event in events if event.type is EventType.USAGE]
    assert [data["cost_usd"] for data in usage] == [1.0, 4.0, None]
    assert [data["step_totals"]["cost_usd"] for data in usage] == [1.0, 5.0, None]
    # Unknown once anything is unpriced: never a partial sum shown as the cost.
    assert [data["execution_totals"]["cost_usd"] for data in usage] == [1.0, 5.0, None]
    assert usage[2]["unpriced"] == "no price for model 'mystery' in the price table"
    assert usage[1]["execution_totals"]["tokens_output"] == 1_000_000
    steps = {run.key: run for run in execution.steps}
    assert steps["a"].attributes is not None
    assert steps["a"].attributes["cost_usd"] == 5.0
    assert steps["a"].attributes["tokens_input"] == 1_000_000
    assert steps["b"].attributes is not None
    assert "cost_usd" not in steps["b"].attributes


async def test_a_step_over_its_budget_is_stopped_and_fails_with_the_figures_not_retried(
    url: str, tmp_path: Path
) -> None:
    kind = ReportingStep()
    definition = f"""
name: capped
steps:
  - key: a
    kind: reporting
    retries: {{max: 3, delay: 0}}
    budget: {{max_cost_usd: 0.5}}
    with: {{reports: [{_million(0, 0)}, {{input: 520000, output: 0}}, {_million(1)}]}}
"""
    async with _core(url, tmp_path, kind) as core:
        execution, events = await _run(core, definition)
    assert execution.status is ExecutionStatus.FAILED
    assert execution.error == "step a failed: budget exceeded: $0.52 > $0.50"
    assert kind.reported == [0, 1]  # stopped at the crossing: the third was never reported
    ends = [e for e in events if e.type is EventType.STEP_STATUS and e.data["status"] != "RUNNING"]
    assert [(e.attempt, e.data["status"], e.data.get("retry_in")) for e in ends] == [
        (1, "FAILED", None)
    ]


async def test_an_execution_over_its_budget_fails_and_starts_nothing_more(
    url: str, tmp_path: Path
) -> None:
    kind = ReportingStep()
    definition = f"""
name: capped
budget: {{max_tokens: 1500000}}
steps:
  - {{key: a, kind: reporting, with: {{reports: [{_million(1)}]}}}}
  - {{key: b, kind: reporting, with: {{reports: [{_million(1)}, {_million(1)}]}}}}
  - {{key: c, kind: reporting, with: {{reports: [{_million(1)}]}}}}
"""
    async with _core(url, tmp_path, kind) as core:
        execution, _ = await _run(core, definition)
    assert execution.status is ExecutionStatus.FAILED
    assert execution.error == "budget exceeded: 2000000 tokens > 1500000"
    statuses = {run.key: run.status.value for run in execution.latest_attempts().values()}
    assert statuses == {"a": "SUCCEEDED", "b": "FAILED"}
    assert kind.reported == [0, 0]


async def test_entries_follow_the_output_written_before_them(url: str, tmp_path: Path) -> None:
    kind = ReportingStep()
    definition = """
name: transcript
steps:
  - key: a
    kind: reporting
    with: {reports: [{entry: ASSISTANT_TEXT, text: hello}, {entry: RESULT, text: done}]}
"""
    async with _core(url, tmp_path, kind) as core:
        execution, events = await _run(core, definition)
    assert execution.status is ExecutionStatus.SUCCEEDED
    shown = [
        event.data.get("text") if event.type is EventType.OUTPUT else event.data["entry"]
        for event in events
        if event.type in (EventType.OUTPUT, EventType.AGENT_ENTRY)
    ]
    assert shown == ["before entry 0\n", "ASSISTANT_TEXT", "before entry 1\n", "RESULT"]
    entry = next(event for event in events if event.type is EventType.AGENT_ENTRY)
    assert entry.data == {"entry": "ASSISTANT_TEXT", "text": "hello"}
