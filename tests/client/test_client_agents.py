"""Agent transcripts and usage in the client and `rw`, from a real server's real runner.

The `llm` and `agent` kinds are built apart from the client, so a test-only kind
(tests/support/transcript_step.py) reports a fixed transcript through the real StepContext:
the runner prices and totals the usage, the event log stores it, GraphQL and the client's
canonical operation carry it. Only what the step says is given; everything after it is real.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from runwire_client import (
    AgentEntryReported,
    AgentEntryType,
    Event,
    ExecutionStatus,
    OutputChunk,
    RunwireClient,
    StepStatus,
    StepStatusChanged,
    UnknownEvent,
    UsageReported,
    decode,
)
from runwire_client.view import LiveView, PlainView, RunState, event_json
from tests.support.inprocess import Served, serving_in_thread
from tests.support.transcript_step import TranscriptStep

from runwire.app import create_app
from runwire.runner.steps import step_kinds
from runwire.settings import Settings

RW = Path(sys.executable).with_name("rw")
# The fake provider's price (runner/prices.yaml): $1 per million input tokens, $4 per million
# output tokens. 1,000 in and 500 out cost $0.001 + $0.002.
PRICED_COST = 0.003
AGENT_RUN = """
name: agent-run
steps:
  - key: plan
    kind: transcript
    with:
      report:
        - {entry: INIT, data: {model: runwire-fake-1, tools: [Bash, Read]}}
        - {entry: ASSISTANT_TEXT, text: "I will list the files.\\nThen read one."}
        - {entry: TOOL_CALL, tool: Bash, call_id: c1, data: {input: {command: ls -la}}}
        - {entry: TOOL_RESULT, call_id: c1, text: "a.txt\\nb.txt"}
        - {entry: TOOL_CALL, tool: Read, call_id: c2, data: {input: {path: /nope}}}
        - {entry: TOOL_RESULT, call_id: c2, text: "no such file", is_error: true}
        - usage: {model: runwire-fake-1, input: 1000, output: 500, cached: 200, ttft_ms: 250,
                  duration_ms: 1250}
        - {entry: RESULT, text: "Two files.", data: {outcome: success, turns: 3,
                                                     duration_ms: 4200}}
  - key: judge
    kind: transcript
    with:
      report:
        - usage: {model: mystery-model, input: 10, output: 5}
"""
PRICED_ONLY = """
name: priced-run
steps:
  - key: ask
    kind: transcript
    with:
      report:
        - usage: {model: runwire-fake-1, input: 1000, output: 500}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The real app with the transcript kind besides the shipped ones, on its own thread's loop
    (SQLite, memory bus), so both async client tests and `rw` subprocesses can use it."""
    if not RW.exists():
        pytest.fail(f"{RW} missing: install the client (`pip install -e clients/python`)")
    data = tmp_path_factory.mktemp("agents") / "data"
    settings = Settings(data_dir=data, load_examples=False, step_user="", grace_seconds=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as in tests/contract/conftest.py
        app = create_app(settings, {**step_kinds(settings), "transcript": TranscriptStep()})
    with serving_in_thread(app, settings.admin_token_file) as found:
        yield found


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("definitions")
    paths = {"agent": directory / "agent.yaml", "priced": directory / "priced.yaml"}
    paths["agent"].write_text(AGENT_RUN)
    paths["priced"].write_text(PRICED_ONLY)
    return paths


def rw(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "RUNWIRE_URL": served.url,
        "RUNWIRE_TOKEN": served.token,
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(RW), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def _followed(served: Served, definition: str) -> list[Event]:
    async with RunwireClient(served.url, served.token) as client:
        started = await client.start(definition=definition)
        return [event async for event in client.follow(started.id)]


# --- the client ---------------------------------------------------------------------------------


async def test_follow_yields_typed_entries_and_priced_usage_in_order(served: Served) -> None:
    events = await _followed(served, AGENT_RUN)

    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    entries = [e for e in events if isinstance(e, AgentEntryReported)]
    assert [(e.entry, e.tool, e.call_id, e.is_error) for e in entries] == [
        (AgentEntryType.INIT, None, None, False),
        (AgentEntryType.ASSISTANT_TEXT, None, None, False),
        (AgentEntryType.TOOL_CALL, "Bash", "c1", False),
        (AgentEntryType.TOOL_RESULT, None, "c1", False),
        (AgentEntryType.TOOL_CALL, "Read", "c2", False),
        (AgentEntryType.TOOL_RESULT, None, "c2", True),
        (AgentEntryType.RESULT, None, None, False),
    ]
    assert entries[0].data == {"model": "runwire-fake-1", "tools": ["Bash", "Read"]}
    assert entries[1].text == "I will list the files.\nThen read one."
    assert entries[2].data == {"input": {"command": "ls -la"}}
    assert entries[3].text == "a.txt\nb.txt"
    assert all(e.step_key == "plan" and e.attempt == 1 for e in entries)

    priced, unpriced = [e for e in events if isinstance(e, UsageReported)]
    assert (priced.model, priced.tokens_input, priced.tokens_output) == (
        "runwire-fake-1",
        1000,
        500,
    )
    assert priced.tokens_cached == 200
    # Cached input tokens cost $0.10 per million, the other 800 $1.
    assert priced.cost_usd == pytest.approx(0.0008 + 0.00002 + 0.002)
    assert priced.unpriced is None
    assert priced.price_source is not None
    assert "fake" in priced.price_source
    assert priced.ttft_ms == 250
    assert priced.tokens_per_second == pytest.approx(500)  # 500 tokens in the 1 s after the first
    assert priced.step_totals.calls == 1
    assert priced.execution_totals.cost_usd == pytest.approx(priced.cost_usd)

    assert unpriced.step_key == "judge"
    assert unpriced.cost_usd is None
    assert unpriced.unpriced == "no price for model 'mystery-model' in the price table"
    assert unpriced.step_totals.cost_usd is None
    # The execution's cost is unknown from here on: never the priced part's sum, never 0.
    totals = unpriced.execution_totals
    assert (totals.calls, totals.unpriced, totals.cost_usd) == (2, 1, None)
    assert (totals.tokens_input, totals.tokens_output, totals.tokens) == (1010, 505, 1515)
    assert events[-1].terminal


# --- rw -----------------------------------------------------------------------------------------


def test_rw_run_follow_shows_the_transcript_and_cost_as_they_arrive(
    served: Served, files: dict[str, Path]
) -> None:
    done = rw(served, "run", str(files["agent"]), "--follow")

    assert done.returncode == 0, done.stderr
    events, _, summary = done.stdout.partition("\n\n")
    lines = [re.sub(r"^\[\d+\] ", "", line) for line in events.splitlines()]
    transcript = [line for line in lines if line.startswith(("plan (", "judge ("))]
    assert transcript == [
        "plan (agent) | agent started (runwire-fake-1, 2 tools)",
        "plan (agent) | assistant: I will list the files.",
        "plan (agent) |   Then read one.",
        "plan (agent) | → Bash(command='ls -la')",
        "plan (agent) | ← Bash: a.txt (+1 lines)",
        "plan (agent) | → Read(path='/nope')",
        "plan (agent) | ✗ Read failed: no such file",
        "plan (usage) | runwire-fake-1: 1,000 in / 500 out tokens, 200 cached, $0.00282,"
        " TTFT 0.25s, 500.0 tokens/s; step $0.00282, 1,500 tokens;"
        " execution $0.00282, 1,500 tokens",
        "plan (agent) | result success (3 turns, 4.20s): Two files.",
        "judge (usage) | mystery-model: 10 in / 5 out tokens, cost unknown (no price for model"
        " 'mystery-model' in the price table); step cost unknown (1 of 1 unpriced), 15 tokens;"
        " execution cost unknown (1 of 2 unpriced), 1,515 tokens",
    ]
    # Usage and entries come between the step's start and its end.
    assert lines.index("step plan started (attempt 1, transcript)") < lines.index(transcript[0])
    assert lines.index(transcript[-2]) < next(
        i for i, line in enumerate(lines) if line.startswith("step plan succeeded")
    )
    headline, header, *rows = summary.splitlines()
    assert headline.startswith("agent-run SUCCEEDED in ")
    assert ", cost unknown (1 usage report(s) without a price)," in headline
    assert "tokens 1,515 (1,010 in / 505 out)" in headline
    assert header.split() == ["step", "status", "duration", "attempts", "cost", "tokens"]
    assert rows[0].split()[0] == "plan"
    assert rows[0].split()[-2:] == ["$0.00282", "1,500"]
    assert rows[1].split()[0] == "judge"
    assert rows[1].split()[-2:] == ["unknown", "15"]


def test_rw_json_names_the_new_event_types(served: Served, files: dict[str, Path]) -> None:
    done = rw(served, "run", str(files["agent"]), "--follow", "--json")

    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    usage = [e for e in events if e["type"] == "USAGE"]
    entries = [e for e in events if e["type"] == "AGENT_ENTRY"]
    assert len(usage) == 2
    assert len(entries) == 7
    assert entries[2]["entry"] == "TOOL_CALL"
    assert entries[2]["data"] == {"input": {"command": "ls -la"}}
    assert usage[1]["cost_usd"] is None
    assert usage[1]["execution_totals"]["unpriced"] == 1


def test_rw_show_prints_usage_totals(served: Served, files: dict[str, Path]) -> None:
    execution_id = rw(served, "run", str(files["priced"])).stdout.strip()
    followed = rw(served, "watch", execution_id)
    assert followed.returncode == 0, followed.stderr

    shown = rw(served, "show", execution_id)

    assert shown.returncode == 0, shown.stderr
    assert re.search(
        r"^priced-run SUCCEEDED in \S+, cost \$0\.003, tokens 1,500 \(1,000 in / 500 out\)",
        shown.stdout,
        re.M,
    ), shown.stdout
    assert re.search(r"^ask\s+SUCCEEDED\s+\S+\s+1\s+\$0\.003\s+1,500$", shown.stdout, re.M)


async def test_the_live_view_draws_the_transcript_and_running_cost(served: Served) -> None:
    """The terminal view's frame, drawn from the events a real follow gave."""
    async with RunwireClient(served.url, served.token) as client:
        started = await client.start(definition=AGENT_RUN)
        snapshot = await client.get(started.id)
        state = RunState.of(snapshot)
        console = Console(file=StringIO(), width=160, height=40, force_terminal=True, record=True)
        view = LiveView(state, console)
        async for event in client.follow(started.id):
            view.show(event)
            if isinstance(event, UsageReported) and event.step_key == "plan":
                console.print(view.render())  # plan still running: its cost beside its timer
    frame = console.export_text()
    # The headline's total and the running step's, beside its timer.
    assert re.search(r"^agent-run  RUNNING  \S+  [\d.]+s  \$0\.00282, 1,500 tokens$", frame, re.M)
    assert re.search(r"plan\s+attempt 1\s+[\d.]+s  \$0\.00282, 1,500 tokens$", frame, re.M)
    assert re.search(r"^plan\s+│ → Bash\(command='ls -la'\)$", frame, re.M)
    assert re.search(r"^plan\s+│ ✗ Read failed: no such file$", frame, re.M)
    assert re.search(r"^plan\s+│ \$ runwire-fake-1: 1,000 in / 500 out tokens", frame, re.M)


# --- a server newer than the client -------------------------------------------------------------


def _wire(typename: str, seq: int, **fields: Any) -> dict[str, Any]:
    """An event as FollowExecutionEvents returns it: a type the client's operation does not
    select gets only the interface's fields."""
    return {
        "__typename": typename,
        "seq": seq,
        "at": "2026-12-02T10:00:00+00:00",
        "type": fields.pop("type", None),
        "stepKey": "dial",
        "attempt": 1,
        **fields,
    }


def test_an_unknown_event_type_is_kept_and_shown_not_raised() -> None:
    batch = {
        "lastSeq": 3,
        "events": [
            _wire("OutputChunk", 1, stream="stdout", text="dialling\n"),
            _wire("CallAnswered", 2, type="CALL_ANSWERED"),
            _wire("StepStatusChanged", 3, stepStatus="SUCCEEDED", kind="call"),
        ],
    }

    events = decode.event_batch(batch)

    assert [type(e) for e in events] == [OutputChunk, UnknownEvent, StepStatusChanged]
    unknown = events[1]
    assert isinstance(unknown, UnknownEvent)
    assert (unknown.typename, unknown.type, unknown.seq, unknown.step_key) == (
        "CallAnswered",
        "CALL_ANSWERED",
        2,
        "dial",
    )
    assert unknown.at == datetime(2026, 12, 2, 10, tzinfo=UTC)
    assert not unknown.terminal
    assert json.loads(event_json(unknown))["type"] == "CALL_ANSWERED"
    out = StringIO()
    view = PlainView(RunState("e1", "calls", ExecutionStatus.RUNNING, {}), out)
    for event in events:
        view.show(event)
    assert out.getvalue().splitlines()[1] == (
        "[2] dial event CALL_ANSWERED (a type this rw does not know: upgrade runwire-client to"
        " see it)"
    )


def test_an_entry_kind_the_client_does_not_know_stays_its_name() -> None:
    found = decode.event(
        _wire(
            "AgentEntryReported",
            4,
            type="AGENT_ENTRY",
            entry="THINKING",
            entryText="hmm",
            tool=None,
            callId=None,
            isError=False,
            data=None,
        )
    )
    assert isinstance(found, AgentEntryReported)
    assert found.entry == "THINKING"
    assert not isinstance(found.entry, AgentEntryType)
    out = StringIO()
    PlainView(RunState("e1", "agent", ExecutionStatus.RUNNING, {}), out).show(found)
    assert out.getvalue() == "[4] dial (agent) | thinking: hmm\n"


def test_the_live_view_draws_a_models_answer_as_it_streams() -> None:
    """An llm step's text has no line break until it ends: the frame shows it growing."""
    state = RunState(execution_id="e1", name="llm-chat", status=ExecutionStatus.RUNNING, steps={})
    at = datetime(2026, 12, 3, tzinfo=UTC)
    console = Console(file=StringIO(), width=100, height=30, force_terminal=True, record=True)
    view = LiveView(state, console)
    view.show(
        StepStatusChanged(
            seq=1,
            at=at,
            step_key="ask",
            attempt=1,
            status=StepStatus.RUNNING,
            kind="llm",
            exit_code=None,
            error=None,
            output=None,
            retry_in_seconds=None,
            reason=None,
        )
    )
    for seq, text in enumerate(["You said: ", "hello ", "there"], start=2):
        view.show(
            OutputChunk(seq=seq, at=at, step_key="ask", attempt=1, stream="stdout", text=text)
        )
    console.print(view.render())
    assert re.search(r"^ask │ You said: hello there$", console.export_text(), re.M)

    # Its end completes the line: drawn once in the next frame, not twice.
    view.show(
        StepStatusChanged(
            seq=5,
            at=at,
            step_key="ask",
            attempt=1,
            status=StepStatus.SUCCEEDED,
            kind="llm",
            exit_code=None,
            error=None,
            output=None,
            retry_in_seconds=None,
            reason=None,
        )
    )
    console.print(view.render())
    assert len(re.findall(r"^ask │ You said: hello there$", console.export_text(), re.M)) == 1
    assert state.unfinished() == []
