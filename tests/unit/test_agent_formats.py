"""Each agent format, line by line: every entry type, usage, malformed and unknown lines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runwire.domain.agents import AgentEntry, EntryType, Usage
from runwire.fakes.cli_agent import transcript_text
from runwire.runner.agent_formats import FORMATS, Parsed, parse_line


def read(format_name: str, record: Any) -> Parsed:
    parsed = parse_line(format_name, json.dumps(record))
    assert parsed is not None
    return parsed


def one(format_name: str, record: Any) -> AgentEntry:
    [entry] = read(format_name, record).entries
    return entry


# ---- what every format shares -------------------------------------------------------------


@pytest.mark.parametrize("format_name", FORMATS)
@pytest.mark.parametrize("line", ["plain text", "", "  Running tests...", "42", '"quoted"'])
def test_a_line_that_is_not_a_record_is_plain_output(format_name: str, line: str) -> None:
    assert parse_line(format_name, line) is None


@pytest.mark.parametrize("format_name", FORMATS)
@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"type": "result", "result": "cut', "not JSON"),
        ("[1, 2", "not JSON"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_a_malformed_record_is_kept_raw_and_counted(
    format_name: str, line: str, reason: str
) -> None:
    parsed = parse_line(format_name, line)
    assert parsed is not None
    assert parsed.unknown == 1
    [entry] = parsed.entries
    assert entry.type is EntryType.UNKNOWN
    assert entry.data["raw"] == line
    assert entry.data["reason"].startswith(reason)


@pytest.mark.parametrize("format_name", FORMATS)
def test_an_unknown_type_is_kept_raw_and_counted(format_name: str) -> None:
    record = {"type": "something.new", "value": 1}
    parsed = read(format_name, record)
    assert parsed.unknown == 1
    assert parsed.entries == (
        AgentEntry(
            EntryType.UNKNOWN,
            data={"raw": record, "reason": "unknown record type 'something.new'"},
        ),
    )


@pytest.mark.parametrize("format_name", FORMATS)
@pytest.mark.parametrize("transcript", ["success", "error", "malformed"])
def test_every_shipped_transcript_line_reads_without_raising(
    format_name: str, transcript: str
) -> None:
    for line in transcript_text(format_name, transcript).splitlines():
        parse_line(format_name, line)


# ---- claude-stream-json -------------------------------------------------------------------

CLAUDE = "claude-stream-json"


def test_claude_init() -> None:
    entry = one(
        CLAUDE,
        {
            "type": "system",
            "subtype": "init",
            "session_id": "s-1",
            "model": "claude-sonnet-4-5",
            "tools": ["Bash", "Read"],
            "cwd": "/w",
            "permissionMode": "default",
        },
    )
    assert entry == AgentEntry(
        EntryType.INIT,
        data={
            "session_id": "s-1",
            "model": "claude-sonnet-4-5",
            "tools": ["Bash", "Read"],
            "cwd": "/w",
            "permission_mode": "default",
        },
    )


def test_claude_assistant_blocks_become_text_reasoning_and_tool_calls() -> None:
    record = {
        "type": "assistant",
        "message": {
            "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
                {"type": "server_tool_use_v9", "id": "x"},
            ]
        },
        "parent_tool_use_id": None,
    }
    parsed = read(CLAUDE, record)
    assert parsed.entries[:3] == (
        AgentEntry(EntryType.ASSISTANT_TEXT, text="hmm", data={"reasoning": True}),
        AgentEntry(EntryType.ASSISTANT_TEXT, text="Let me look."),
        AgentEntry(
            EntryType.TOOL_CALL, tool="Bash", call_id="toolu_1", data={"input": {"command": "ls"}}
        ),
    )
    assert parsed.entries[3].type is EntryType.UNKNOWN
    assert parsed.unknown == 1
    assert parsed.usage is None  # per-message usage is not counted: the result's covers the run


def test_claude_a_subagents_entries_name_their_parent_call() -> None:
    record = {
        "type": "assistant",
        "message": {"content": [{"type": "text", "text": "sub"}]},
        "parent_tool_use_id": "toolu_9",
    }
    assert one(CLAUDE, record).data == {"parent_tool_use_id": "toolu_9"}


@pytest.mark.parametrize(
    ("content", "text"),
    [("a\nb", "a\nb"), ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "a\nb")],
)
def test_claude_tool_results(content: Any, text: str) -> None:
    record = {
        "type": "user",
        "message": {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": content},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": "no",
                    "is_error": True,
                },
            ],
        },
    }
    assert read(CLAUDE, record).entries == (
        AgentEntry(EntryType.TOOL_RESULT, text=text, call_id="toolu_1"),
        AgentEntry(EntryType.TOOL_RESULT, text="no", call_id="toolu_2", is_error=True),
    )


def test_claude_result_with_usage_and_the_cost_it_reports() -> None:
    parsed = read(
        CLAUDE,
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "result": "done",
            "num_turns": 3,
            "duration_ms": 8000,
            "session_id": "s-1",
            "total_cost_usd": 0.0123,
            "usage": {
                "input_tokens": 10,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 2000,
                "output_tokens": 50,
            },
            "modelUsage": {
                "claude-haiku-4-5": {"outputTokens": 1},
                "claude-sonnet-4-5": {"outputTokens": 49},
            },
        },
    )
    [entry] = parsed.entries
    assert (entry.type, entry.text, entry.is_error) == (EntryType.RESULT, "done", False)
    assert entry.data["outcome"] == "success"
    assert (entry.data["turns"], entry.data["duration_ms"], entry.data["cost_usd"]) == (
        3,
        8000,
        0.0123,
    )
    # Every input token counts as input; those read from the cache are also `cached`.
    assert parsed.usage == Usage(
        model="claude-sonnet-4-5",
        input=2110,
        output=50,
        cached=2000,
        cost_usd=0.0123,
        duration_ms=8000,
    )


@pytest.mark.parametrize(
    ("record", "text"),
    [
        ({"subtype": "error_max_turns", "is_error": False, "num_turns": 2}, None),
        ({"subtype": "error_during_execution", "errors": ["API Error: 500"]}, "API Error: 500"),
        ({"subtype": "success", "is_error": True, "result": "Invalid API key"}, "Invalid API key"),
    ],
)
def test_claude_error_results(record: dict[str, Any], text: str | None) -> None:
    entry = one(CLAUDE, {"type": "result", **record})
    assert (entry.type, entry.is_error, entry.text) == (EntryType.RESULT, True, text)
    assert entry.data["outcome"] == record["subtype"]


def test_claude_partial_text_deltas_stream_as_output_and_other_events_are_known() -> None:
    delta = {
        "type": "stream_event",
        "event": {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hel"}},
    }
    assert read(CLAUDE, delta) == Parsed(output="Hel")
    for event in ({"type": "message_start"}, {"type": "content_block_stop", "index": 0}):
        assert read(CLAUDE, {"type": "stream_event", "event": event}) == Parsed()


def test_claude_a_known_record_of_an_unknown_shape_is_unknown() -> None:
    parsed = read(CLAUDE, {"type": "assistant", "message": {"content": 7}})
    assert parsed.unknown == 1
    assert parsed.entries[0].type is EntryType.UNKNOWN
    assert "unreadable 'assistant' record" in parsed.entries[0].data["reason"]


# ---- codex-jsonl --------------------------------------------------------------------------

CODEX = "codex-jsonl"


def test_codex_thread_and_turns() -> None:
    assert one(CODEX, {"type": "thread.started", "thread_id": "t-1"}) == AgentEntry(
        EntryType.INIT, data={"session_id": "t-1"}
    )
    assert read(CODEX, {"type": "turn.started"}) == Parsed()
    completed = read(
        CODEX,
        {
            "type": "turn.completed",
            "usage": {"input_tokens": 1000, "cached_input_tokens": 800, "output_tokens": 20},
        },
    )
    [result] = completed.entries
    assert (result.type, result.is_error, result.data["outcome"]) == (
        EntryType.RESULT,
        False,
        "success",
    )
    assert completed.usage == Usage(model=None, input=1000, output=20, cached=800)


@pytest.mark.parametrize(
    ("record", "outcome", "text"),
    [
        ({"type": "turn.failed", "error": {"message": "quota"}}, "turn.failed", "quota"),
        ({"type": "error", "message": "disconnected"}, "error", "disconnected"),
    ],
)
def test_codex_failures_are_error_results(record: Any, outcome: str, text: str) -> None:
    entry = one(CODEX, record)
    assert (entry.type, entry.is_error, entry.text, entry.data["outcome"]) == (
        EntryType.RESULT,
        True,
        text,
        outcome,
    )


def test_codex_messages_and_reasoning_when_completed() -> None:
    message = {"id": "i0", "type": "agent_message", "text": "Done."}
    assert read(CODEX, {"type": "item.started", "item": message}) == Parsed()
    assert one(CODEX, {"type": "item.completed", "item": message}) == AgentEntry(
        EntryType.ASSISTANT_TEXT, text="Done."
    )
    reasoning = {"id": "i1", "type": "reasoning", "text": "thinking"}
    assert one(CODEX, {"type": "item.completed", "item": reasoning}).data == {"reasoning": True}
    legacy = {"id": "i2", "item_type": "assistant_message", "text": "old"}
    assert one(CODEX, {"type": "item.completed", "item": legacy}).text == "old"


def test_codex_a_command_is_a_call_when_it_starts_and_a_result_when_it_completes() -> None:
    started = {"id": "i1", "type": "command_execution", "command": "ls", "status": "in_progress"}
    call = AgentEntry(
        EntryType.TOOL_CALL,
        tool="command_execution",
        call_id="i1",
        data={"input": {"command": "ls"}},
    )
    assert read(CODEX, {"type": "item.started", "item": started}).entries == (call,)
    done = {**started, "aggregated_output": "a.py\n", "exit_code": 0, "status": "completed"}
    assert read(CODEX, {"type": "item.completed", "item": done}).entries == (
        call,
        AgentEntry(EntryType.TOOL_RESULT, text="a.py\n", call_id="i1"),
    )
    failed = {**done, "exit_code": 2, "status": "failed"}
    assert read(CODEX, {"type": "item.completed", "item": failed}).entries[1].is_error


def test_codex_file_changes_and_mcp_calls() -> None:
    change = {"id": "i2", "type": "file_change", "changes": [{"path": "a.py", "kind": "update"}]}
    call, result = read(CODEX, {"type": "item.completed", "item": change}).entries
    assert (call.tool, call.data["input"]) == ("file_change", {"changes": change["changes"]})
    assert (result.text, result.is_error) == ("update a.py", False)
    mcp = {
        "id": "i3",
        "type": "mcp_tool_call",
        "server": "docs",
        "tool": "search",
        "arguments": {"q": "x"},
        "error": {"message": "timeout"},
        "status": "failed",
    }
    call, result = read(CODEX, {"type": "item.completed", "item": mcp}).entries
    assert (call.tool, call.data["input"]) == ("docs.search", {"q": "x"})
    assert (result.text, result.is_error) == ("timeout", True)


def test_codex_unknown_items_are_kept_when_they_complete() -> None:
    item = {"id": "i4", "type": "todo_list", "items": []}
    assert read(CODEX, {"type": "item.started", "item": item}) == Parsed()
    parsed = read(CODEX, {"type": "item.completed", "item": item})
    assert parsed.unknown == 1
    assert parsed.entries[0].data["reason"] == "unknown item type 'todo_list'"


# ---- ndjson -------------------------------------------------------------------------------

ND = "ndjson"


def test_ndjson_every_type() -> None:
    assert one(ND, {"type": "init", "session_id": "r", "model": "m"}) == AgentEntry(
        EntryType.INIT, data={"session_id": "r", "model": "m"}
    )
    assert one(ND, {"type": "text", "text": "hi"}) == AgentEntry(
        EntryType.ASSISTANT_TEXT, text="hi"
    )
    assert one(ND, {"type": "text", "text": "hm", "reasoning": True}).data == {"reasoning": True}
    assert one(ND, {"type": "tool_call", "tool": "search", "call_id": "c1", "input": {"q": 1}}) == (
        AgentEntry(EntryType.TOOL_CALL, tool="search", call_id="c1", data={"input": {"q": 1}})
    )
    assert one(ND, {"type": "tool_result", "call_id": "c1", "output": {"v": 1}}) == AgentEntry(
        EntryType.TOOL_RESULT, text='{"v": 1}', call_id="c1"
    )
    assert one(
        ND, {"type": "tool_result", "call_id": "c1", "output": "x", "is_error": True}
    ).is_error
    usage = {"type": "usage", "model": "m", "input_tokens": 10, "output_tokens": 2, "cost_usd": 0.5}
    assert read(ND, usage) == Parsed(usage=Usage(model="m", input=10, output=2, cost_usd=0.5))


def test_ndjson_result() -> None:
    parsed = read(
        ND,
        {
            "type": "result",
            "text": "no",
            "is_error": True,
            "outcome": "tool_failed",
            "turns": 2,
            "usage": {
                "model": "m",
                "input_tokens": 5,
                "output_tokens": 1,
                "cached_input_tokens": 2,
            },
        },
    )
    [entry] = parsed.entries
    assert (entry.type, entry.text, entry.is_error) == (EntryType.RESULT, "no", True)
    assert (entry.data["outcome"], entry.data["turns"]) == ("tool_failed", 2)
    assert parsed.usage == Usage(model="m", input=5, output=1, cached=2)
    assert one(ND, {"type": "result"}).data == {"outcome": "success"}


def test_ndjson_a_tool_call_without_a_tool_is_unknown() -> None:
    parsed = read(ND, {"type": "tool_call", "call_id": "c9"})
    assert parsed.unknown == 1
    assert parsed.entries[0].data["reason"] == "tool_call without a tool name"


@pytest.mark.parametrize("value", ["12", -3, True, float("inf"), None])
def test_ndjson_token_counts_that_are_not_counts_are_zero(value: Any) -> None:
    usage = read(ND, {"type": "usage", "input_tokens": value, "output_tokens": 1}).usage
    assert usage is not None
    assert usage.input == 0
