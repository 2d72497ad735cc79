"""The http step reports its phases (connect, send, wait, read) as spans, against a real server."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from tests.support.http_service import LocalHttpService
from tests.support.steps import RecordingContext

from runwire.runner.steps import STEP_KINDS, StepResult

DELAY = 0.15
"""How long the server waits before the response head, and again in the middle of the body."""


class SlowService(LocalHttpService):
    """A test double of a slow HTTP service: a pause before the head and one inside the body."""

    async def respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"GET /hang "):
            await reader.read()  # until the client gives up and disconnects
            return
        await asyncio.sleep(DELAY)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 10\r\n"
            b"connection: close\r\n\r\nhello"
        )
        await writer.drain()
        await asyncio.sleep(DELAY)
        writer.write(b"world")
        await writer.drain()


@pytest.fixture
async def service() -> AsyncIterator[SlowService]:
    async with SlowService() as service:
        yield service


async def request(params: dict[str, Any], context: RecordingContext) -> StepResult:
    http = STEP_KINDS["http"]
    return await http.run(http.parse(params, "with"), context)


def at(span: dict[str, Any], field: str) -> datetime:
    return datetime.fromisoformat(span[field])


def seconds(span: dict[str, Any]) -> float:
    return (at(span, "finished_at") - at(span, "started_at")).total_seconds()


async def test_reports_each_phase_in_order_with_sane_timings(service: SlowService) -> None:
    context = RecordingContext()
    before = datetime.now().astimezone()
    result = await request({"url": f"{service.url}/slow"}, context)
    after = datetime.now().astimezone()

    assert result.error is None
    assert result.output["body"] == "helloworld"
    spans = context.spans
    assert [span["name"] for span in spans] == [
        "connect",
        "send request",
        "wait for response",
        "read body",
    ]
    assert {(span["kind"], span["status"], span["parent_id"]) for span in spans} == {
        ("http", "SUCCEEDED", None)
    }
    assert len({span["span_id"] for span in spans}) == len(spans)
    host, port = service.url.removeprefix("http://").split(":")
    assert spans[0]["attributes"] == {"host": host, "port": int(port)}
    assert spans[2]["attributes"] == {"status": 200}

    # Phases run one after another, inside the request, and the server's pauses show up where
    # they happened: before the head (waiting) and inside the body (reading).
    for earlier, later in itertools.pairwise(spans):
        assert at(earlier, "finished_at") <= at(later, "started_at")
    assert before <= at(spans[0], "started_at")
    assert at(spans[-1], "finished_at") <= after
    durations = {span["name"]: seconds(span) for span in spans}
    assert all(duration >= 0 for duration in durations.values())
    # Less a little: asyncio's timers may fire up to a few ms early against the wall clock.
    assert durations["wait for response"] >= DELAY - 0.01
    assert durations["read body"] >= DELAY - 0.01
    assert sum(durations.values()) <= result.output["latency_ms"] / 1000


async def test_a_refused_connection_reports_a_failed_connect_span() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request: nothing listens there
    context = RecordingContext()
    result = await request({"url": f"http://127.0.0.1:{port}/"}, context)
    assert result.error is not None
    assert [(span["name"], span["status"]) for span in context.spans] == [("connect", "FAILED")]


async def test_a_timeout_reports_the_phase_it_cut_short_as_cancelled(service: SlowService) -> None:
    context = RecordingContext()
    result = await request({"url": f"{service.url}/hang", "timeout": 0.2}, context)
    assert result.error == "timed out after 0.2 s"
    assert [(span["name"], span["status"]) for span in context.spans] == [
        ("connect", "SUCCEEDED"),
        ("send request", "SUCCEEDED"),
        ("wait for response", "CANCELLED"),
    ]
