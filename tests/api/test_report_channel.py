"""A shell step's report channel through a real server: nested spans in `trace`, typed events."""

from __future__ import annotations

import json
from typing import Any

from tests.support.graphql import definition, execute, start, wait_for_status
from tests.support.server import Server

# Spans and usage are stored rows and attributes: both stores (asyncpg takes typed timestamps).
SERVER_BACKENDS = ("sqlite", "postgres")

QUERY = """
query($id: ID!) {
  execution(id: $id) {
    status
    trace {
      spans { id parentId name kind status startedAt finishedAt stepKey attempt attributes }
      tokens { input output total }
      cost
    }
    events(first: 1000) {
      type stepKey
      ... on UsageReported { model tokensInput tokensOutput costUsd }
      ... on AgentEntryReported { entry tool callId isError data }
    }
  }
}
"""

# What an agent framework's run reports: a run span (reported last: it ends last) with an LLM
# call and a tool call beneath it, the call's usage, and the tool call as a transcript entry.
RECORDS = [
    {
        "type": "span",
        "name": "llm call",
        "kind": "llm",
        "id": "call-1",
        "parent_id": "run",
        "started_at": "2026-12-01T10:00:00.100Z",
        "finished_at": "2026-12-01T10:00:01.300Z",
        "attributes": {"model": "runwire-fake-1", "tokens_input": 1000, "tokens_output": 500},
    },
    {
        "type": "span",
        "name": "search",
        "kind": "tool",
        "id": "tool-1",
        "parent_id": "run",
        "started_at": 1796119201.4,
        "finished_at": 1796119201.9,
        "status": "FAILED",
    },
    {
        "type": "span",
        "name": "agent run",
        "kind": "agent",
        "id": "run",
        "started_at": "2026-12-01T10:00:00Z",
        "finished_at": "2026-12-01T10:00:02Z",
    },
    {"type": "usage", "model": "runwire-fake-1", "input_tokens": 1000, "output_tokens": 500},
    {
        "type": "entry",
        "entry": "TOOL_CALL",
        "tool": "search",
        "call_id": "tool-1",
        "data": {"input": {"q": "runwire"}},
    },
]


def reporting_step(key: str) -> str:
    script = "".join(f"printf '%s\\n' '{json.dumps(record)}' >&3\n" for record in RECORDS)
    return f"{{key: {key}, kind: shell, with: {json.dumps({'shell': True, 'command': script})}}}"


async def test_reported_spans_nest_under_the_step_in_the_trace(server: Server) -> None:
    # Two steps report the same span ids: each gets its own spans, under its own attempt.
    execution_id = await start(
        server, definition=definition(reporting_step("first"), reporting_step("second"))
    )
    await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})
    found: dict[str, Any] = (await execute(server, QUERY, {"id": execution_id}))["execution"]
    assert found["status"] == "SUCCEEDED"
    spans = found["trace"]["spans"]
    by_id = {span["id"]: span for span in spans}
    for key in ("first", "second"):
        (step,) = [span for span in spans if span["name"] == key]
        (run,) = [s for s in spans if s["parentId"] == step["id"]]
        assert (run["name"], run["kind"], run["stepKey"]) == ("agent run", "agent", key)
        assert run["id"] != "run"
        children = [s for s in spans if s["parentId"] == run["id"]]
        assert [(s["name"], s["kind"], s["status"]) for s in children] == [
            ("llm call", "llm", "SUCCEEDED"),
            ("search", "tool", "FAILED"),
        ]
        assert children[0]["attributes"]["tokens_input"] == 1000
        assert children[1]["startedAt"].startswith("2026-12-01T10:00:01.4")
        assert by_id[run["id"]]["finishedAt"].startswith("2026-12-01T10:00:02")
    # The step's own usage counts once per step; the spans beneath it are not added again.
    assert found["trace"]["tokens"] == {"input": 2000, "output": 1000, "total": 3000}
    assert abs(found["trace"]["cost"] - 0.006) < 1e-9

    usage = [event for event in found["events"] if event["type"] == "USAGE"]
    assert [(u["stepKey"], u["model"], u["tokensInput"]) for u in usage] == [
        ("first", "runwire-fake-1", 1000),
        ("second", "runwire-fake-1", 1000),
    ]
    assert abs(usage[0]["costUsd"] - 0.003) < 1e-9
    entries = [event for event in found["events"] if event["type"] == "AGENT_ENTRY"]
    assert entries[0] == {
        "type": "AGENT_ENTRY",
        "stepKey": "first",
        "entry": "TOOL_CALL",
        "tool": "search",
        "callId": "tool-1",
        "isError": False,
        "data": {"input": {"q": "runwire"}},
    }
