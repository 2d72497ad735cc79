"""A call step through a real server: typed CALL events on the subscription, SSE and the event
log (a late joiner sees the whole call), the call's spans in `trace`, its artifacts listed."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
from tests.support.graphql import STOP, definition, execute, start, wait_for_status
from tests.support.server import Server

from runwire.domain.clock import utc_now

SERVER_BACKENDS = ("sqlite", "postgres")

CALL = {
    "dial": {"target": "bank", "driver": "simulated"},
    "actions": [{"press": "1"}, {"wait": 0.3}, {"press": {"digits": "2", "method": "inband"}}],
}

QUERY = """
query($id: ID!) {
  execution(id: $id) {
    status
    steps { key status output artifacts { name mediaType bytes url } }
    trace { spans { name kind status stepKey attributes } }
    events(first: 1000) {
      type stepKey
      ... on CallEventReported { call action digits method by cause atMs }
    }
  }
}
"""


METRICS = """
query($since: DateTime!, $until: DateTime!, $scenario: String) {
  executionMetrics(since: $since, until: $until, scenario: $scenario) {
    calls {
      attempts answered
      timeToAnswerMs { count p50 p95 min max }
      durationMs { count p50 }
      turnLatencyMs { count }
    }
  }
}
"""


async def sse_events(server: Server, execution_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "GET", f"{server.url}/executions/{execution_id}/events", headers=server.headers
        ) as response,
    ):
        assert response.status_code == 200
        current: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                current["event"] = line[6:].strip()
            elif line.startswith("data:"):
                current["data"] = json.loads(line[5:].strip())
            elif not line and current:
                events.append(current)
                current = {}
    return events


async def test_a_call_is_seen_as_typed_events_spans_and_artifacts(server: Server) -> None:
    step = f"{{key: call, kind: call, with: {json.dumps(CALL)}}}"
    since = utc_now() - timedelta(seconds=1)
    execution_id = await start(server, definition=definition(step, name="ivr-press"))
    await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})
    found = (await execute(server, QUERY, {"id": execution_id}))["execution"]
    assert found["status"] == "SUCCEEDED", found

    calls = [event for event in found["events"] if event["type"] == "CALL"]
    assert [event["call"] for event in calls] == [
        "DIALING",
        "RINGING",
        "ANSWERED",
        "DTMF_SENT",
        "DTMF_SENT",
        "HUNG_UP",
    ]
    assert {event["stepKey"] for event in calls} == {"call"}
    assert [(e["digits"], e["method"], e["action"]) for e in calls[3:5]] == [
        ("1", "rfc4733", 0),
        ("2", "inband", 2),
    ]
    assert (calls[-1]["by"], calls[-1]["cause"]) == ("US", "BYE")
    assert calls[-1]["atMs"] > 300

    # A late joiner on SSE reads the whole call from the log, each moment typed by `call`.
    streamed = [e["data"] for e in await sse_events(server, execution_id) if e["event"] == "CALL"]
    assert [data["call"] for data in streamed] == [event["call"] for event in calls]
    assert streamed[3]["digits"] == "1"

    [run] = found["steps"]
    assert run["output"]["call"]["answered"] is True
    artifacts = {artifact["name"]: artifact for artifact in run["artifacts"]}
    assert artifacts["call.wav"]["mediaType"] == "audio/wav"
    assert artifacts["call.wav"]["bytes"] > 8000 * 2 * 2 * 0.3  # 0.3 s of two 16-bit channels
    assert artifacts["transcript.txt"]["mediaType"].startswith("text/plain")
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(f"{server.url}{artifacts['transcript.txt']['url']}")
    assert response.status_code == 200
    assert "→ pressed 1 (rfc4733)" in response.text

    # The attempt's span carries the call's figures; one span beneath it per action.
    step_span, *actions = [span for span in found["trace"]["spans"] if span["kind"] == "call"]
    assert step_span["name"] == "call"
    assert step_span["attributes"]["call_time_to_answer_ms"] >= 150
    assert [span["name"] for span in actions] == ["dial", "press", "wait", "press"]

    # executionMetrics: the window's call figures, as percentiles.
    window = {"since": since.isoformat(), "until": (utc_now() + timedelta(seconds=1)).isoformat()}
    metrics = await execute(server, METRICS, window)
    calls_measured = metrics["executionMetrics"]["calls"]
    assert (calls_measured["attempts"], calls_measured["answered"]) == (1, 1)
    answer = calls_measured["timeToAnswerMs"]
    assert answer["count"] == 1
    assert answer["p50"] == answer["p95"] == answer["min"] == answer["max"]
    assert answer["p50"] == run["output"]["call"]["time_to_answer_ms"]
    assert calls_measured["durationMs"]["count"] == 1
    assert calls_measured["turnLatencyMs"]["count"] == 0  # no listen: no turn measured


async def test_a_stop_mid_call_hangs_up_and_keeps_the_recording(server: Server) -> None:
    held = {"dial": {"target": "bank", "driver": "simulated"}, "actions": [{"wait": 30}]}
    execution_id = await start(
        server, definition=definition(f"{{key: call, kind: call, with: {json.dumps(held)}}}")
    )
    moments = """query($id: ID!) {
      execution(id: $id) { events(first: 100) { ... on CallEventReported { call } } }
    }"""
    async with asyncio.timeout(10):
        while True:
            found = (await execute(server, moments, {"id": execution_id}))["execution"]
            if any(event.get("call") == "ANSWERED" for event in found["events"]):
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # 0.3 s of the call to record, at least
    stopped = await execute(server, STOP, {"id": execution_id, "reason": "enough"})
    assert stopped["stopExecution"]["__typename"] == "StopExecutionSuccess"
    await wait_for_status(server, execution_id, {"CANCELLED"}, timeout=10)

    found = (await execute(server, QUERY, {"id": execution_id}))["execution"]
    calls = [event for event in found["events"] if event["type"] == "CALL"]
    assert [event["call"] for event in calls][-1] == "HUNG_UP"
    assert (calls[-1]["by"], calls[-1]["cause"]) == ("US", "BYE")
    [run] = found["steps"]
    assert run["status"] == "CANCELLED"
    [wav] = [artifact for artifact in run["artifacts"] if artifact["name"] == "call.wav"]
    assert wav["bytes"] > 8000 * 2 * 2 * 0.3
