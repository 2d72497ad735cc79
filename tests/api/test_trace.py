"""`execution { trace }` through a real server: root, step attempts, HTTP phases and totals."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.graphql import definition, execute, start, wait_for_status
from tests.support.http_service import LocalHttpService
from tests.support.server import Server

# The only API tests with http steps, so the only ones storing spans: on Postgres they are
# upserted by asyncpg, which takes the span times as typed timestamps.
SERVER_BACKENDS = ("sqlite", "postgres")

TRACE = """
query($id: ID!) {
  execution(id: $id) {
    status durationMs
    steps { key attempt status }
    trace {
      spans {
        id parentId name kind status startedAt finishedAt durationMs stepKey attempt attributes
      }
      totalDurationMs
      tokens { input output total }
      cost
    }
    events(first: 1000) {
      seq type stepKey attempt
      ... on SpanReported { span { id parentId name status durationMs } }
    }
  }
}
"""


class PingService(LocalHttpService):
    """A test double of a service the http step calls: answers every request with 200 "pong"."""

    async def respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n"
            b"connection: close\r\n\r\npong"
        )
        await writer.drain()


@pytest.fixture
async def service() -> AsyncIterator[PingService]:
    async with PingService() as service:
        yield service


def two_steps(url: str, extra: str = "") -> str:
    return definition(
        '{key: prepare, kind: shell, with: {argv: ["echo", "ready"]}}',
        f'{{key: ping, kind: http, with: {{url: "{url}/ping"}}}}',
        name="traced",
        extra=extra,
    )


async def run(server: Server, **input: Any) -> dict[str, Any]:
    execution_id = await start(server, **input)
    await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"})
    found: dict[str, Any] = (await execute(server, TRACE, {"id": execution_id}))["execution"]
    found["id"] = execution_id
    return found


def when(span: dict[str, Any], field: str) -> datetime:
    return datetime.fromisoformat(span[field])


def check_times(span: dict[str, Any], slack_ms: int = 0) -> None:
    """Finished, not before it started, and durationMs agrees with the two times."""
    started, finished = when(span, "startedAt"), when(span, "finishedAt")
    assert started <= finished
    elapsed_ms = int((finished - started).total_seconds() * 1000)
    assert 0 <= elapsed_ms - span["durationMs"] <= slack_ms


async def test_trace_of_a_shell_and_an_http_step(server: Server, service: PingService) -> None:
    found = await run(server, definition=two_steps(service.url))
    assert found["status"] == "SUCCEEDED", found
    trace = found["trace"]
    spans = trace["spans"]

    root = spans[0]
    assert (root["id"], root["parentId"], root["name"], root["kind"], root["status"]) == (
        found["id"],
        None,
        "traced",
        "execution",
        "SUCCEEDED",
    )
    assert (root["stepKey"], root["attempt"], root["attributes"]) == (None, None, {})
    # The runner measures the execution's duration just before it stamps the terminal event.
    check_times(root, slack_ms=5)
    assert root["durationMs"] == trace["totalDurationMs"] == found["durationMs"]

    steps = [span for span in spans if span["parentId"] == root["id"]]
    assert [(s["name"], s["kind"], s["status"], s["attempt"]) for s in steps] == [
        ("prepare", "shell", "SUCCEEDED", 1),
        ("ping", "http", "SUCCEEDED", 1),
    ]
    for step in steps:
        check_times(step)
        assert when(root, "startedAt") <= when(step, "startedAt")
        assert when(step, "finishedAt") <= when(root, "finishedAt")
    prepare, ping = steps
    assert when(prepare, "finishedAt") <= when(ping, "startedAt")
    assert ping["attributes"]["status"] == 200
    assert prepare["durationMs"] + ping["durationMs"] <= trace["totalDurationMs"]

    # The http step's phases hang under its attempt, inside its time, one after another.
    phases = [span for span in spans if span["parentId"] == ping["id"]]
    assert [p["name"] for p in phases] == [
        "connect",
        "send request",
        "wait for response",
        "read body",
    ]
    assert spans == [root, prepare, ping, *phases]  # parents first, in order of start
    for phase in phases:
        check_times(phase)
        assert (phase["kind"], phase["status"], phase["stepKey"], phase["attempt"]) == (
            "http",
            "SUCCEEDED",
            "ping",
            1,
        )
        assert when(ping, "startedAt") <= when(phase, "startedAt")
        assert when(phase, "finishedAt") <= when(ping, "finishedAt")
    for earlier, later in itertools.pairwise(phases):
        assert when(earlier, "finishedAt") <= when(later, "startedAt")
    assert phases[2]["attributes"] == {"status": 200}

    # Nothing reported tokens or cost.
    assert (trace["tokens"], trace["cost"]) == (None, None)

    # The same spans travelled as SPAN events of the ping attempt.
    reported = [e for e in found["events"] if e["type"] == "SPAN"]
    assert [(e["stepKey"], e["attempt"]) for e in reported] == [("ping", 1)] * len(phases)
    assert [e["span"]["id"] for e in reported] == [p["id"] for p in phases]
    assert {e["span"]["parentId"] for e in reported} == {ping["id"]}


async def test_every_attempt_of_a_retried_step_is_a_span(server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    flaky = (
        "{key: flaky, kind: shell, retries: {max: 1, delay: 0.01},"
        f' with: {{argv: ["sh", "-c", "test -e {marker} || {{ touch {marker}; exit 3; }}"]}}}}'
    )
    found = await run(server, definition=definition(flaky, name="retried"))
    assert found["status"] == "SUCCEEDED", found
    spans = found["trace"]["spans"]
    root = spans[0]
    assert [(s["name"], s["attempt"], s["status"], s["parentId"]) for s in spans[1:]] == [
        ("flaky", 1, "FAILED", root["id"]),
        ("flaky", 2, "SUCCEEDED", root["id"]),
    ]
    for span in spans:
        check_times(span, slack_ms=5 if span is root else 0)
    assert len({span["id"] for span in spans}) == 3


async def test_a_test_panel_run_traces_only_its_step(server: Server, service: PingService) -> None:
    found = await run(server, definition=two_steps(service.url), mode="STEP", stepKey="ping")
    assert found["status"] == "SUCCEEDED", found
    spans = found["trace"]["spans"]
    root = spans[0]
    step_spans = [span for span in spans if span["parentId"] == root["id"]]
    assert [(s["name"], s["attempt"]) for s in step_spans] == [("ping", 1)]
    assert {span["stepKey"] for span in spans[1:]} == {"ping"}
