"""Agent steps run by the real runner on SQLite and Postgres, with `runwire fake-agent`.

The stored events are what subscribers get: entries in order with the output around them, the
agent's usage and cost, the failures an agent reports and the budgets it crosses, and a stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import textwrap
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
from runwire.runner.steps import step_kinds
from runwire.scenarios.catalog import examples_directory
from runwire.settings import Settings

WORKSPACE = "workspace-a"
ACTOR = Actor(workspace_id=WORKSPACE, label="test", role=Role.EDITOR)
FAKE_AGENT = [sys.executable, "-m", "runwire.fakes.cli_agent"]


@pytest.fixture(params=["sqlite", "postgres"])
async def core(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Core]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'runner.sqlite'}"
        else:
            url = await stack.enter_async_context(postgres.fresh_database())
        config = Settings(
            database_url=url,
            bus_url=f"memory://{uuid.uuid4().hex}",
            data_dir=tmp_path / "data",
            load_examples=False,
            poll_seconds=0.05,
            step_user="",  # steps as the test's user: see OWN_USER_STEPS in tests/support/server.py
        )
        async with Database.open(url, migrate=True):
            pass
        yield await stack.enter_async_context(Core.running(config, step_kinds(config)))


async def start(core: Core, step: dict[str, Any], **definition: Any) -> str:
    source = {"name": "agent", "steps": [{"key": "agent", "kind": "agent", **step}], **definition}
    started = await core.executions.start(StartRequest(definition=json.dumps(source)), ACTOR)
    return started.id


async def final(core: Core, execution_id: str) -> Execution:
    async with asyncio.timeout(20):
        while True:
            execution = await core.store.executions.execution(execution_id, workspace=WORKSPACE)
            assert execution is not None
            if execution.status.is_terminal and execution.owner is None:
                return execution
            await asyncio.sleep(0.02)


async def events(core: Core, execution_id: str, *types: EventType) -> list[Event]:
    found = await core.store.events.events(execution_id, 0)
    return [event for event in found if not types or event.type in types]


def agent(format_name: str, transcript: str, *extra: str) -> dict[str, Any]:
    argv = [*FAKE_AGENT, "--format", format_name, "--transcript", transcript, *extra]
    return {"command": argv, "format": format_name}


async def test_entries_arrive_in_order_with_the_output_and_the_agents_cost(core: Core) -> None:
    step = {"with": {**agent("claude-stream-json", "malformed"), "stdin": "go"}}
    execution_id = await start(core, step)
    done = await final(core, execution_id)
    assert done.status is ExecutionStatus.SUCCEEDED
    stream = [
        (e.type, e.data.get("entry") or e.data.get("text") or e.data.get("cost_usd"))
        for e in await events(core, execution_id, EventType.AGENT_ENTRY, EventType.OUTPUT)
    ]
    # The plain line stays output, between the entries it came between.
    assert stream == [
        (EventType.AGENT_ENTRY, "INIT"),
        (EventType.OUTPUT, "Checking credentials... ok\n"),
        (EventType.AGENT_ENTRY, "UNKNOWN"),
        (EventType.AGENT_ENTRY, "UNKNOWN"),
        (EventType.AGENT_ENTRY, "ASSISTANT_TEXT"),
        (EventType.AGENT_ENTRY, "UNKNOWN"),
        (EventType.AGENT_ENTRY, "RESULT"),
    ]
    [usage] = await events(core, execution_id, EventType.USAGE)
    assert usage.data["cost_usd"] == 0.0009
    assert usage.data["price_source"] == "reported by the step"
    assert usage.data["step_totals"]["cost_usd"] == 0.0009
    assert usage.data["execution_totals"]["tokens_output"] == 12
    [step_run] = done.steps
    assert step_run.output["unknown_lines"] == 3
    assert step_run.output["result"] == "Done despite the noise."
    assert step_run.attributes["cost_usd"] == 0.0009
    assert step_run.attributes["unknown_lines"] == 3


async def test_an_agent_error_fails_the_step_with_the_agents_message(core: Core) -> None:
    execution_id = await start(core, {"with": agent("claude-stream-json", "error", "x")})
    done = await final(core, execution_id)
    assert done.status is ExecutionStatus.FAILED
    [step_run] = done.steps
    assert step_run.status == "FAILED"
    assert step_run.error == "agent failed: error_max_turns after 2 turns"
    [usage] = await events(core, execution_id, EventType.USAGE)
    assert usage.data["cost_usd"] == 0.0051  # what it spent before failing still counts
    # Each tool call is a span from call to result; the first result was an error.
    spans = [e.data for e in await events(core, execution_id, EventType.SPAN)]
    assert [(s["name"], s["kind"], s["status"]) for s in spans] == [
        ("Grep", "tool", "FAILED"),
        ("Read", "tool", "SUCCEEDED"),
    ]


@pytest.mark.parametrize("when", ["while-it-runs", "as-it-exits"])
async def test_a_budget_crossed_by_the_results_cost_fails_the_step_with_the_figures(
    core: Core, tmp_path: Path, when: str
) -> None:
    spend = {"input_tokens": 1, "output_tokens": 1, "cost_usd": 0.52}
    records = [
        {"type": "init", "session_id": "r"},
        {"type": "result", "text": "spent", "usage": spend},
        {"type": "text", "text": "never seen"},
    ]
    transcript = tmp_path / "spend.jsonl"
    if when == "while-it-runs":
        # It has more to say, slowly: the stop reaches it while it runs.
        transcript.write_text("".join(json.dumps(r) + "\n" for r in records))
        command = [*FAKE_AGENT, "--format", "ndjson", "--transcript", str(transcript)]
        command += ["--delay-ms", "400", "x"]
    else:
        # The agent has exited when its result is read (a child printed it): the stop cannot
        # reach a process, and the step ends as if it had completed; it must fail all the same.
        transcript.write_text("".join(json.dumps(r) + "\n" for r in records[:2]))
        command = ["sh", "-c", f"(sleep 0.2; cat {transcript}) & exit 0"]
    step = {"with": {"command": command, "format": "ndjson"}, "budget": {"max_cost_usd": 0.5}}
    execution_id = await start(core, step)
    done = await final(core, execution_id)
    assert done.status is ExecutionStatus.FAILED
    [step_run] = done.steps
    assert (step_run.status, step_run.error) == ("FAILED", "budget exceeded: $0.52 > $0.50")
    texts = [e.data.get("text") for e in await events(core, execution_id, EventType.AGENT_ENTRY)]
    assert texts[-1] == "spent"


async def test_stop_during_a_run_kills_the_agent_and_everything_it_started(core: Core) -> None:
    script = textwrap.dedent(f"""
        import json, os, subprocess, sys
        tool = subprocess.Popen(["sleep", "60"])
        print(json.dumps({{"type": "init", "session_id": "%d %d" % (os.getpid(), tool.pid)}}))
        sys.stdout.flush()
        os.execv(sys.executable, {FAKE_AGENT!r} + ["--format", "ndjson", "--delay-ms", "60000"])
    """)
    step = {"with": {"command": [sys.executable, "-c", script], "format": "ndjson"}}
    execution_id = await start(core, step)
    async with asyncio.timeout(20):
        while not (entries := await events(core, execution_id, EventType.AGENT_ENTRY)):
            await asyncio.sleep(0.02)
    pids = [int(pid) for pid in entries[0].data["data"]["session_id"].split()]
    await core.control.stop(execution_id, "enough", ACTOR)
    done = await final(core, execution_id)
    assert done.status is ExecutionStatus.CANCELLED
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def test_the_shipped_example_runs_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `make run` and the image have it: `runwire` on the PATH steps get.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    example = examples_directory() / "coding-agent.yaml"
    url = f"sqlite:///{tmp_path / 'runner.sqlite'}"
    config = Settings(
        database_url=url,
        bus_url=f"memory://{uuid.uuid4().hex}",
        data_dir=tmp_path / "data",
        load_examples=False,
        poll_seconds=0.05,
        step_user="",
    )
    async with Core.running(config, step_kinds(config)) as core:
        started = await core.executions.start(StartRequest(definition=example.read_text()), ACTOR)
        done = await final(core, started.id)
        assert done.status is ExecutionStatus.SUCCEEDED, done.error
        [step_run] = done.steps
        assert step_run.output["result"].endswith("all 14 tests pass.")
        entries = await events(core, started.id, EventType.AGENT_ENTRY)
        assert entries[1].data["text"] == "I'll look at the project for: check that the tests pass"
