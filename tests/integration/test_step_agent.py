"""The agent step against real processes: `runwire fake-agent` replaying each format's transcripts.

The fake agent is a transcript replayer standing in for the real CLIs (server/runwire/fakes).
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from tests.support.steps import OWN_USER_KINDS, RecordingContext, running, wait_for

from runwire.domain.agents import EntryType
from runwire.domain.models import OutputStream
from runwire.runner.steps import StepResult
from runwire.scenarios.definition import parse_definition
from runwire.scenarios.expectations import assess

FAKE_AGENT = [sys.executable, "-m", "runwire.fakes.cli_agent"]


def fake(format_name: str, transcript: str = "success", *extra: str) -> list[str]:
    return [*FAKE_AGENT, "--format", format_name, "--transcript", transcript, *extra]


async def run(params: dict[str, Any], context: RecordingContext) -> StepResult:
    agent = OWN_USER_KINDS["agent"]
    return await agent.run(agent.parse(params, "with"), context)


async def test_claude_success_entries_usage_spans_and_output() -> None:
    context = RecordingContext()
    params = {"command": fake("claude-stream-json"), "format": "claude-stream-json"}
    result = await run({**params, "stdin": "check the tests\n"}, context)
    types = [entry.type for entry in context.entries]
    assert types == [
        EntryType.INIT,
        EntryType.ASSISTANT_TEXT,
        EntryType.TOOL_CALL,
        EntryType.TOOL_RESULT,
        EntryType.TOOL_CALL,
        EntryType.TOOL_RESULT,
        EntryType.ASSISTANT_TEXT,
        EntryType.RESULT,
    ]
    # The prompt went in on stdin, as `claude -p` reads it.
    assert context.entries[1].text == "I'll look at the project for: check the tests"
    # A result names the tool of the call it answers.
    assert [(e.tool, e.call_id) for e in context.entries if e.type is EntryType.TOOL_RESULT] == [
        ("Bash", "toolu_01A"),
        ("Bash", "toolu_01B"),
    ]
    # Partial deltas streamed as output, before the whole message's entry.
    assert (
        context.text(OutputStream.STDOUT) == "The project has 2 Python files and all 14 tests pass."
    )
    [priced] = context.usages
    assert (priced.cost_usd, priced.usage.model, priced.usage.output) == (
        0.0123,
        "claude-sonnet-4-5-20250929",
        180,
    )
    assert [(s["name"], s["kind"], s["status"], s["attributes"]) for s in context.spans] == [
        ("Bash", "tool", "SUCCEEDED", {"tool": "Bash", "call_id": "toolu_01A"}),
        ("Bash", "tool", "SUCCEEDED", {"tool": "Bash", "call_id": "toolu_01B"}),
    ]
    assert result.error is None
    assert result.exit_code == 0
    final = "The project has 2 Python files and all 14 tests pass."
    assert result.output == {
        "result": final,
        "is_error": False,
        "outcome": "success",
        "turns": 3,
        "session_id": "4f1c9a2e-7b3d-4e8a-9c61-2d5f0e8b7a13",
        "usage": {"input": 37512, "output": 180, "cached": 36000, "reasoning": 0},
        "cost_usd": 0.0123,
        "unknown_lines": 0,
        "exit_code": 0,
        "stderr": "",
    }
    assert result.observed is not None
    assert (result.observed.exit_code, result.observed.text) == (0, final)


async def test_claude_error_max_turns_fails_with_the_agents_outcome() -> None:
    context = RecordingContext()
    params = {"command": fake("claude-stream-json", "error", "x"), "format": "claude-stream-json"}
    result = await run(params, context)
    assert result.error == "agent failed: error_max_turns after 2 turns"
    assert result.exit_code == 1
    assert result.output["is_error"] is True
    assert context.usages[0].cost_usd == 0.0051
    statuses = [s["status"] for s in context.spans]
    assert statuses == ["FAILED", "SUCCEEDED"]  # the Grep result was an error


async def test_codex_success_dedupes_calls_and_prices_by_the_named_model() -> None:
    context = RecordingContext()
    params = {
        "command": fake("codex-jsonl", "success", "list files"),
        "format": "codex-jsonl",
        "model": "gpt-5-mini",
    }
    result = await run(params, context)
    calls = [(e.tool, e.call_id) for e in context.entries if e.type is EntryType.TOOL_CALL]
    # item_1 started and completed: one call; file_change only completed: still one call.
    assert calls == [
        ("command_execution", "item_1"),
        ("file_change", "item_2"),
        ("docs.search", "item_3"),
    ]
    assert len(context.spans) == 3
    [priced] = context.usages
    assert priced.usage.model == "gpt-5-mini"
    assert priced.cost_usd == pytest.approx((315 * 0.25 + 24448 * 0.025 + 122 * 2.0) / 1e6)
    assert result.error is None
    # Codex's turn has no text of its own: the result is the last message.
    assert result.output["result"] == "Updated app.py; the 2 files are listed above."
    assert result.output["session_id"] == "0199a213-81c0-7800-8aa1-bbab2a035a53"


async def test_codex_turn_failed_fails_with_its_message() -> None:
    result = await run(
        {"command": fake("codex-jsonl", "error", "x"), "format": "codex-jsonl"}, RecordingContext()
    )
    assert result.error == (
        "agent failed: turn.failed: stream disconnected before completion: rate limit reached"
    )


async def test_ndjson_per_call_usage_is_summed_and_priced() -> None:
    context = RecordingContext()
    result = await run(
        {"command": fake("ndjson", "success", "weather"), "format": "ndjson"}, context
    )
    assert [p.usage.input for p in context.usages] == [1200, 1300]
    # runwire-fake-* has a made-up price: $1/M input, $4/M output.
    assert result.output["cost_usd"] == pytest.approx((2500 * 1.0 + 65 * 4.0) / 1e6)
    assert result.output["result"] == "It is 18 °C (64.4 °F) and cloudy in Paris."


@pytest.mark.parametrize(
    ("format_name", "unknown", "plain"),
    [
        ("claude-stream-json", 3, "Checking credentials... ok\n"),
        ("codex-jsonl", 3, "Reading prompt from stdin...\n"),
        ("ndjson", 3, "plain log line from the agent\n"),
    ],
)
async def test_malformed_and_unknown_lines_are_kept_and_counted(
    format_name: str, unknown: int, plain: str
) -> None:
    context = RecordingContext()
    result = await run(
        {"command": fake(format_name, "malformed", "x"), "format": format_name}, context
    )
    assert result.error is None
    assert result.output["unknown_lines"] == unknown
    assert result.attributes == {"agent_format": format_name, "unknown_lines": unknown}
    assert context.text(OutputStream.STDOUT) == plain
    kept = [e for e in context.entries if e.type is EntryType.UNKNOWN]
    assert len(kept) == unknown
    assert all("raw" in e.data for e in kept)
    assert context.entries[-1].type is EntryType.RESULT


async def test_lines_split_across_reads_and_a_last_line_without_newline(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import sys, time
        w = sys.stdout.write
        w('{"type": "te'); sys.stdout.flush(); time.sleep(0.05)
        w('xt", "text": "caf\\u00e9"}\\nplain\\r\\n'); sys.stdout.flush(); time.sleep(0.05)
        w('{"type": "result", "text": "end"}')
    """)
    context = RecordingContext()
    result = await run({"command": [sys.executable, "-c", script], "format": "ndjson"}, context)
    assert [(e.type, e.text) for e in context.entries] == [
        (EntryType.ASSISTANT_TEXT, "café"),
        (EntryType.RESULT, "end"),
    ]
    assert context.text(OutputStream.STDOUT) == "plain\n"
    assert result.output["result"] == "end"


async def test_entries_and_plain_output_keep_their_order() -> None:
    script = 'print(\'one\'); print(\'{"type": "text", "text": "two"}\'); print(\'three\')'
    context = RecordingContext()
    await run({"command": [sys.executable, "-c", script], "format": "ndjson"}, context)
    order = [item[2] if item[0] == "output" else item[1].text for item in context.timeline]
    assert order == ["one\n", "two", "three\n"]


async def test_stop_interrupts_the_agent_and_kills_what_it_started() -> None:
    # The agent starts a tool process that outlives SIGINT, then reports both pids. It reports
    # only once its SIGINT handler is set, so the stop cannot land in the interpreter's start-up
    # (where Python exits 1 with a KeyboardInterrupt traceback instead of running the handler).
    script = textwrap.dedent("""
        import json, os, signal, subprocess, sys, time
        def interrupted(signum, frame):
            print("agent: interrupted", file=sys.stderr)
            os._exit(130)
        signal.signal(signal.SIGINT, interrupted)
        tool = subprocess.Popen(["sleep", "60"], start_new_session=True)
        print(json.dumps({"type": "init", "session_id": "%d %d" % (os.getpid(), tool.pid)}))
        sys.stdout.flush()
        time.sleep(60)
    """)
    context = RecordingContext(grace_seconds=30)
    task = asyncio.create_task(
        run({"command": [sys.executable, "-c", script], "format": "ndjson"}, context)
    )
    await wait_for(lambda: bool(context.entries), seconds=10.0)
    pids = [int(pid) for pid in context.entries[0].data["session_id"].split()]
    assert all(running(pid) for pid in pids)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The agent ended on SIGINT within the grace period; its tool, in a session of its own so
    # SIGINT to the agent's group never reached it, was killed by the reaper.
    [ended] = [text for stream, text in context.calls if stream is OutputStream.LOG]
    assert ended == "stopped: exited with code 130"
    await wait_for(lambda: not any(running(pid) for pid in pids), seconds=5)


async def test_a_call_without_a_result_closes_its_span_as_cancelled() -> None:
    line = json.dumps({"type": "tool_call", "tool": "search", "call_id": "c1"})
    context = RecordingContext()
    await run({"command": ["echo", line], "format": "ndjson"}, context)
    assert [(s["name"], s["status"]) for s in context.spans] == [("search", "CANCELLED")]


async def test_an_agent_that_cannot_start_is_a_failed_result() -> None:
    result = await run({"command": ["/nonexistent/agent"], "format": "ndjson"}, RecordingContext())
    assert result.error is not None
    assert result.error.startswith("cannot start: No such file or directory")


@pytest.mark.parametrize(
    ("needle", "error"),
    [
        ("all 14 tests pass", None),
        ("all failed", 'expect.output_contains: "all failed" not found in the agent\'s result'),
    ],
)
async def test_expect_checks_the_agents_result_text(needle: str, error: str | None) -> None:
    step = {
        "key": "s",
        "kind": "agent",
        "with": {
            "command": fake("claude-stream-json", "success", "x"),
            "format": "claude-stream-json",
        },
        "expect": {"output_contains": needle},
    }
    spec = parse_definition({"name": "t", "steps": [step]}, OWN_USER_KINDS).steps[0]
    result = await run(spec.with_, RecordingContext())
    assert assess(spec.expect, "agent", result)[0].error == error
