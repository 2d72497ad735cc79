"""llm steps on a real server, against `runwire fake-llm` run as its own process.

Subscribers see the answer's deltas as OUTPUT events while the step runs, then its USAGE; the
shipped agent example runs as FULL, as STEP and as STEP_IN_CONTEXT; the trace has its llm spans.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from tests.support.graphql import execute, start, wait_for_status, ws_transport
from tests.support.server import Server, free_port

# Usage events and spans are stored rows; check both stores.
SERVER_BACKENDS = ("sqlite", "postgres")

EVENTS = """
subscription($id: ID!) {
  executionEvents(executionId: $id, afterSeq: 0) {
    events {
      seq type stepKey
      ... on StepStatusChanged { stepStatus error }
      ... on OutputChunk { stream text }
      ... on UsageReported { model tokensInput tokensOutput costUsd }
    }
  }
}
"""

DETAILS = """
query($id: ID!) {
  execution(id: $id) {
    status error
    steps { key attempt status error output }
    trace { spans { kind stepKey status attributes } tokens { input output } cost }
  }
}
"""


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[str]:
    """`runwire fake-llm` on a free port, as a newcomer runs it; its base URL."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "runwire"), "fake-llm", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--tokens-per-second", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "runwire fake-llm exited"
            assert time.monotonic() < deadline, "runwire fake-llm did not answer"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def subscribed(server: Server, execution_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async with Client(transport=ws_transport(server)) as session:
        request = GraphQLRequest(EVENTS, variable_values={"id": execution_id})
        async for message in session.subscribe(request):
            found.extend(message["executionEvents"]["events"])
    return found


async def details(server: Server, execution_id: str) -> dict[str, Any]:
    return dict((await execute(server, DETAILS, {"id": execution_id}))["execution"])


def inputs(fake_llm: str, **more: str) -> dict[str, str]:
    return {"base_url": fake_llm, "tool_url": fake_llm.replace("/v1", "/tools/weather"), **more}


async def test_deltas_reach_subscribers_while_the_step_runs_then_its_usage(
    server: Server, fake_llm: str
) -> None:
    # 8 words at 20 a second: the answer takes 0.4 s, far longer than output is coalesced.
    execution_id = await start(
        server,
        scenario="llm-chat",
        inputs={"base_url": fake_llm, "model": "runwire-fake-chat:tps=20:words=8"},
    )
    events = await subscribed(server, execution_id)

    outputs = [e for e in events if e["type"] == "OUTPUT" and e["stream"] == "stdout"]
    ended = next(e for e in events if e.get("stepStatus") == "SUCCEEDED")
    [usage] = [e for e in events if e["type"] == "USAGE"]
    assert "".join(e["text"] for e in outputs) == " ".join(f"word{i}" for i in range(1, 9))
    assert len(outputs) > 1  # streamed, not one blob at the end
    assert all(e["seq"] < usage["seq"] < ended["seq"] for e in outputs)
    assert usage["model"].startswith("runwire-fake-chat")
    assert usage["tokensOutput"] == 8
    assert usage["costUsd"] == pytest.approx((usage["tokensInput"] * 1 + 8 * 4) / 1e6)


async def test_the_agent_example_runs_in_full(server: Server, fake_llm: str) -> None:
    execution_id = await start(server, scenario="llm-agent", inputs=inputs(fake_llm))
    await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})

    found = await details(server, execution_id)
    assert found["status"] == "SUCCEEDED", found["error"]
    steps = {step["key"]: step for step in found["steps"]}
    [call] = steps["plan"]["output"]["tool_calls"]
    assert (call["name"], call["arguments"]) == ("get_weather", {"city": "Paris"})
    assert steps["weather"]["output"]["body"]["city"] == "Paris"
    answer = steps["answer"]["output"]["text"]
    assert answer.startswith('The get_weather tool returned: {"city": "Paris", "forecast": ')

    # The calls' spans, under their steps' own (whose kind is the step's, llm, too).
    llm_spans = [span for span in found["trace"]["spans"] if "ttft_ms" in span["attributes"]]
    assert sorted(span["stepKey"] for span in llm_spans) == ["answer", "plan"]
    assert {span["kind"] for span in llm_spans} == {"llm"}
    assert all(span["attributes"]["cost_usd"] > 0 for span in llm_spans)
    assert found["trace"]["cost"] == pytest.approx(
        sum(span["attributes"]["cost_usd"] for span in llm_spans)
    )
    assert found["trace"]["tokens"]["output"] == sum(
        span["attributes"]["tokens_output"] for span in llm_spans
    )


async def test_the_agent_examples_first_step_runs_alone(server: Server, fake_llm: str) -> None:
    execution_id = await start(
        server, scenario="llm-agent", inputs=inputs(fake_llm), mode="STEP", stepKey="plan"
    )
    await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})

    found = await details(server, execution_id)
    assert found["status"] == "SUCCEEDED", found["error"]
    [plan] = found["steps"]
    assert plan["key"] == "plan"
    assert plan["output"]["finish_reason"] == "tool_calls"


async def test_the_agent_examples_last_step_runs_with_simulated_upstream(
    server: Server, fake_llm: str
) -> None:
    call = {
        "id": "call_sim",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"},
    }
    upstream = {
        "plan": {
            "message": {"role": "assistant", "content": None, "tool_calls": [call]},
            "tool_calls": [{"id": "call_sim", "name": "get_weather", "arguments": {}}],
        },
        "weather": {"status": 200, "body": {"city": "Atlantis", "forecast": "underwater"}},
    }
    execution_id = await start(
        server,
        scenario="llm-agent",
        inputs=inputs(fake_llm),
        mode="STEP_IN_CONTEXT",
        stepKey="answer",
        upstream=upstream,
    )
    await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})

    found = await details(server, execution_id)
    assert found["status"] == "SUCCEEDED", found["error"]
    [answer] = found["steps"]
    assert answer["output"]["text"] == (
        'The get_weather tool returned: {"city": "Atlantis", "forecast": "underwater"}'
    )
