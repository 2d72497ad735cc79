"""SSE `data` keys are camelCase, the GraphQL fields' casing; the user's own keys are kept."""

from __future__ import annotations

from datetime import UTC, datetime

from runwire.domain.models import Event, EventType
from runwire.http.sse import event_payload


def test_runwire_keys_are_camel_case_and_user_keys_are_kept() -> None:
    totals = {"calls": 1, "tokens_input": 10, "cost_usd": None}
    usage = Event(
        "e1",
        7,
        datetime(2026, 12, 3, tzinfo=UTC),
        EventType.USAGE,
        {"tokens_input": 10, "ttft_ms": 5, "step_totals": totals, "execution_totals": totals},
        step_key="plan",
        attempt=1,
    )
    payload = event_payload(usage)
    assert list(payload) == [
        "seq", "at", "type", "stepKey", "attempt",
        "tokensInput", "ttftMs", "stepTotals", "executionTotals",
    ]  # fmt: skip
    assert payload["stepTotals"] == {"calls": 1, "tokensInput": 10, "costUsd": None}

    # A step's output and an agent's tool input are the user's: their keys go as they are.
    step = Event(
        "e1",
        8,
        datetime(2026, 12, 3, tzinfo=UTC),
        EventType.STEP_STATUS,
        {"status": "SUCCEEDED", "exit_code": 0, "output": {"build_id": 3}},
        step_key="build",
        attempt=1,
    )
    assert event_payload(step)["output"] == {"build_id": 3}
    assert event_payload(step)["exitCode"] == 0
    entry = Event(
        "e1",
        9,
        datetime(2026, 12, 3, tzinfo=UTC),
        EventType.AGENT_ENTRY,
        {"entry": "TOOL_CALL", "call_id": "c1", "data": {"input": {"file_path": "a.py"}}},
        step_key="plan",
        attempt=1,
    )
    assert event_payload(entry)["callId"] == "c1"
    assert event_payload(entry)["data"] == {"input": {"file_path": "a.py"}}
