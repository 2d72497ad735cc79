"""Codex's `codex exec --json`: thread, turn and item events, one JSON object per line.

    {"type": "thread.started", "thread_id"}
    {"type": "turn.started"}
    {"type": "item.started" | "item.updated" | "item.completed", "item": {"id", "type", ...}}
        agent_message {text}, reasoning {text}, command_execution {command, aggregated_output,
        exit_code, status}, file_change {changes: [{path, kind}], status}, mcp_tool_call {server,
        tool, arguments, result, error, status}, web_search {query}, todo_list, error {message}
    {"type": "turn.completed", "usage": {"input_tokens", "cached_input_tokens", "output_tokens"}}
    {"type": "turn.failed", "error": {"message"}}
    {"type": "error", "message"}

A tool item becomes a TOOL_CALL when it starts and a TOOL_RESULT when it completes; one that
only completes (a file change) gives both at once. Codex does not report a cost or a model here:
a step names its model (`with: model`) for the price table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runwire.domain.agents import AgentEntry, EntryType, Usage
from runwire.runner.agent_formats.common import (
    NOTHING,
    Parsed,
    compact,
    count,
    string,
    text_of,
    unknown,
)

_TOOLS = frozenset({"command_execution", "file_change", "mcp_tool_call", "web_search"})
_TEXTS = frozenset({"agent_message", "assistant_message", "reasoning"})


def parse(record: Mapping[str, Any]) -> Parsed:
    kind = record.get("type")
    if kind == "thread.started":
        data = compact({"session_id": string(record.get("thread_id"))})
        return Parsed((AgentEntry(EntryType.INIT, data=data),))
    if kind in ("turn.started", "item.updated"):
        return NOTHING
    if kind in ("item.started", "item.completed"):
        item = record.get("item")
        if not isinstance(item, Mapping):
            return unknown(record, f"{kind} without an item")
        return _item(item, completed=kind == "item.completed", record=record)
    if kind == "turn.completed":
        return _completed(record)
    if kind == "turn.failed":
        error = record.get("error")
        message = error.get("message") if isinstance(error, Mapping) else error
        return _failed("turn.failed", text_of(message) or "the turn failed")
    if kind == "error":
        return _failed("error", text_of(record.get("message")) or "error")
    return unknown(record, f"unknown record type {kind!r}")


def _item(item: Mapping[str, Any], *, completed: bool, record: Mapping[str, Any]) -> Parsed:
    # Codex versions before 0.44 named the field item_type and the message assistant_message.
    kind = item.get("type", item.get("item_type"))
    call_id = string(item.get("id"))
    if kind in _TEXTS:
        if not completed:
            return NOTHING
        extra = {"reasoning": True} if kind == "reasoning" else {}
        return Parsed(
            (AgentEntry(EntryType.ASSISTANT_TEXT, text=text_of(item.get("text")), data=extra),)
        )
    if kind in _TOOLS:
        tool, call_input = _call(kind, item)
        call = AgentEntry(
            EntryType.TOOL_CALL, tool=tool, call_id=call_id, data={"input": call_input}
        )
        if not completed:
            return Parsed((call,))
        output, is_error = _outcome(kind, item)
        result = AgentEntry(EntryType.TOOL_RESULT, text=output, call_id=call_id, is_error=is_error)
        # The call too: the step drops it when the item's start already reported it.
        return Parsed((call, result))
    if kind == "error":
        if not completed:
            return NOTHING
        text = text_of(item.get("message"))
        return Parsed((AgentEntry(EntryType.ASSISTANT_TEXT, text=text, is_error=True),))
    if not completed:
        return NOTHING  # reported once, when it completes
    return unknown(record, f"unknown item type {kind!r}")


def _call(kind: str, item: Mapping[str, Any]) -> tuple[str, Any]:
    """The tool's name and its input, as a transcript shows them."""
    if kind == "command_execution":
        return "command_execution", {"command": item.get("command")}
    if kind == "file_change":
        return "file_change", {"changes": item.get("changes")}
    if kind == "web_search":
        return "web_search", {"query": item.get("query")}
    server, tool = string(item.get("server")), string(item.get("tool")) or "mcp_tool_call"
    return (f"{server}.{tool}" if server else tool), item.get("arguments")


def _outcome(kind: str, item: Mapping[str, Any]) -> tuple[str, bool]:
    status = item.get("status")
    failed = status in ("failed", "declined")
    if kind == "command_execution":
        code = item.get("exit_code")
        failed = failed or (isinstance(code, int) and code != 0)
        return text_of(item.get("aggregated_output")), failed
    if kind == "file_change":
        changes = item.get("changes")
        lines = [
            f"{change.get('kind')} {change.get('path')}"
            for change in changes or ()
            if isinstance(change, Mapping)
        ]
        return "\n".join(lines), failed
    if kind == "mcp_tool_call":
        error = item.get("error")
        if error:
            message = error.get("message") if isinstance(error, Mapping) else error
            return text_of(message), True
        result = item.get("result")
        if isinstance(result, Mapping) and "content" in result:
            return text_of(result["content"]), failed
        return ("" if result is None else json.dumps(result, default=str)), failed
    return "", failed


def _completed(record: Mapping[str, Any]) -> Parsed:
    raw = record.get("usage")
    usage_data = raw if isinstance(raw, Mapping) else {}
    usage = None
    if usage_data:
        # OpenAI's convention: input_tokens counts the cached ones too.
        usage = Usage(
            model=None,
            input=count(usage_data.get("input_tokens")),
            output=count(usage_data.get("output_tokens")),
            cached=count(usage_data.get("cached_input_tokens")),
            reasoning=count(usage_data.get("reasoning_output_tokens")),
        )
    data = compact({"outcome": "success", "usage": dict(usage_data) or None})
    return Parsed((AgentEntry(EntryType.RESULT, data=data),), usage=usage)


def _failed(outcome: str, message: str) -> Parsed:
    entry = AgentEntry(EntryType.RESULT, text=message, is_error=True, data={"outcome": outcome})
    return Parsed((entry,))
