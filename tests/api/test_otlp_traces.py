"""Execution traces over OTLP: a real server sends them to a local collector that decodes them.

The collector is a test double (tests/support/otlp_receiver.py) speaking OTLP/HTTP protobuf as
a real one does; the caller's W3C trace context reaches the server as a real client sends it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from gql import Client, GraphQLRequest
from gql.transport.httpx import HTTPXAsyncTransport
from runwire_client import RunwireClient
from tests.support.graphql import START, STOP, definition, execute, gated_step, wait_for_status
from tests.support.otlp_receiver import OtlpReceiver, running_receiver
from tests.support.server import Server, running_server

# The trace context is a column the two databases write on different paths (one statement on
# Postgres, Piccolo's insert on SQLite).
SERVER_BACKENDS = ("sqlite", "postgres")
ENDED = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}
API_KEY = "collector-key-" + secrets.token_hex(8)  # must never reach the server's log

SPAN_KIND_INTERNAL, SPAN_KIND_CLIENT, SPAN_KIND_CONSUMER = 1, 3, 5
STATUS_OK, STATUS_ERROR = 1, 2

TRACE = """
query($id: ID!) {
  execution(id: $id) {
    status traceId error
    trace { traceId spans { id parentId name startedAt finishedAt attempt } }
  }
}
"""


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with running_receiver() as found:
        yield found


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    receiver: OtlpReceiver,
) -> Iterator[Server]:
    """One server per backend, sending traces to the receiver (each post given up after 1 s)."""
    backend = request.param
    settings = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key={API_KEY}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
    }
    with running_server(backend, tmp_path_factory.mktemp(backend), settings) as found:
        yield found


def traceparent() -> tuple[str, str, str]:
    """A caller's (traceparent, trace id, span id), sampled."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def start(server: Server, headers: dict[str, str] | None = None, **input: Any) -> Any:
    """startExecution over HTTP with gql, with the caller's extra request headers."""
    transport = HTTPXAsyncTransport(
        url=server.graphql_http, timeout=30, headers={**server.headers, **(headers or {})}
    )
    async with Client(transport=transport) as session:
        result = await session.execute(GraphQLRequest(START, variable_values={"input": input}))
    return result["startExecution"]


async def run(server: Server, headers: dict[str, str] | None = None, **input: Any) -> Any:
    started = await start(server, headers, **input)
    assert started["__typename"] == "StartExecutionSuccess", started
    execution_id = started["execution"]["id"]
    await wait_for_status(server, execution_id, ENDED)
    found = (await execute(server, TRACE, {"id": execution_id}))["execution"]
    found["id"] = execution_id
    return found


def of_execution(execution_id: str) -> Any:
    return lambda span: span.attributes.get("runwire.execution.id") == execution_id


def nanoseconds(text: str) -> int:
    moment = datetime.fromisoformat(text)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


async def test_a_callers_trace_continues_into_the_run(
    server: Server, receiver: OtlpReceiver
) -> None:
    header, trace_id, caller_span = traceparent()
    steps = definition(
        '{key: prepare, kind: shell, with: {argv: ["echo", "ready"]}}',
        f'{{key: ping, kind: http, with: {{url: "{receiver.url}/ping"}}}}',
        "{key: broken, kind: shell, retries: {max: 1, delay: 0.01},"
        ' with: {argv: ["sh", "-c", "exit 3"]}}',
        name="traced",
    )
    found = await run(server, {"traceparent": header, "tracestate": "vendor=a1"}, definition=steps)
    assert found["status"] == "FAILED", found
    assert found["traceId"] == found["trace"]["traceId"] == trace_id

    stored = found["trace"]["spans"]  # root, 4 step attempts, the http step's 4 phases
    assert len(stored) == 9, stored
    spans = await receiver.wait_for(of_execution(found["id"]), len(stored))
    assert len(spans) == len(stored), spans
    assert {span.trace_id for span in spans} == {trace_id}

    # The root is the execution, under the caller's span, failed with the execution's error.
    (root,) = [span for span in spans if span.kind == SPAN_KIND_CONSUMER]
    assert (root.name, root.parent_span_id, root.trace_state) == (
        "traced",
        caller_span,
        "vendor=a1",
    )
    assert (root.status_code, root.status_message) == (STATUS_ERROR, found["error"])
    assert root.resource["service.name"] == "runwire"
    assert root.headers["x-api-key"] == API_KEY
    assert root.headers["content-type"] == "application/x-protobuf"

    # A span per step attempt under the root; the failed attempts with an error status.
    attempts = sorted(
        (span for span in spans if span.parent_span_id == root.span_id),
        key=lambda span: span.start_ns,
    )
    assert [
        (s.name, s.attributes["runwire.step.attempt"], s.status_code, s.kind) for s in attempts
    ] == [
        ("prepare", 1, STATUS_OK, SPAN_KIND_INTERNAL),
        ("ping", 1, STATUS_OK, SPAN_KIND_INTERNAL),
        ("broken", 1, STATUS_ERROR, SPAN_KIND_INTERNAL),
        ("broken", 2, STATUS_ERROR, SPAN_KIND_INTERNAL),
    ]
    assert all(s.status_message for s in attempts[2:])
    # The http step's phases under its attempt, as calls out of the process.
    ping = attempts[1]
    phases = sorted(
        (span for span in spans if span.parent_span_id == ping.span_id),
        key=lambda span: span.start_ns,
    )
    assert [(p.name, p.kind) for p in phases] == [
        ("connect", SPAN_KIND_CLIENT),
        ("send request", SPAN_KIND_CLIENT),
        ("wait for response", SPAN_KIND_CLIENT),
        ("read body", SPAN_KIND_CLIENT),
    ]
    assert ping.attributes["runwire.span.status"] == "SUCCEEDED"
    assert ping.attributes["runwire.status"] == 200  # what the step reported, namespaced

    # The recorded times, as the API shows them: each span within its parent's.
    by_name_attempt = {(s["name"], s["attempt"]): s for s in stored}
    by_id = {span.span_id: span for span in spans}
    for span in spans:
        assert 0 <= span.start_ns <= span.end_ns
        attempt = span.attributes.get("runwire.step.attempt")
        if span is not root and span.parent_span_id == root.span_id:
            recorded = by_name_attempt[(span.name, attempt)]
            assert span.start_ns == nanoseconds(recorded["startedAt"])
            assert span.end_ns == nanoseconds(recorded["finishedAt"])
        if span is not root:
            parent = by_id[span.parent_span_id]
            assert parent.start_ns <= span.start_ns
            assert span.end_ns <= parent.end_ns
    assert root.end_ns - root.start_ns >= sum(s.end_ns - s.start_ns for s in attempts)
    assert API_KEY not in server.log.read_text()


async def test_the_input_field_wins_over_the_header(server: Server, receiver: OtlpReceiver) -> None:
    header, _, _ = traceparent()
    given, trace_id, caller_span = traceparent()
    found = await run(
        server,
        {"traceparent": header},
        definition=definition('{key: one, kind: shell, with: {argv: ["true"]}}'),
        traceContext={"traceparent": given, "tracestate": "rojo=00f067aa0ba902b7"},
    )
    assert found["traceId"] == trace_id
    spans = await receiver.wait_for(of_execution(found["id"]), 2)
    assert {span.trace_id for span in spans} == {trace_id}
    (root,) = [span for span in spans if span.kind == SPAN_KIND_CONSUMER]
    assert (root.parent_span_id, root.trace_state) == (caller_span, "rojo=00f067aa0ba902b7")
    assert root.status_code == STATUS_OK


async def test_the_python_client_passes_the_callers_context(
    server: Server, receiver: OtlpReceiver
) -> None:
    given, trace_id, caller_span = traceparent()
    async with RunwireClient(server.url, server.token) as client:
        started = await client.start(
            definition=definition('{key: one, kind: shell, with: {argv: ["true"]}}'),
            traceparent=given,
        )
    spans = await receiver.wait_for(of_execution(started.id), 2)
    assert {span.trace_id for span in spans} == {trace_id}
    (root,) = [span for span in spans if span.kind == SPAN_KIND_CONSUMER]
    assert root.parent_span_id == caller_span


async def test_without_a_caller_the_run_is_a_trace_of_its_own(
    server: Server, receiver: OtlpReceiver
) -> None:
    # A malformed header is ignored as the W3C spec asks: the run starts a trace of its own.
    found = await run(
        server,
        {"traceparent": "00-not-a-trace-01"},
        definition=definition('{key: one, kind: shell, with: {argv: ["true"]}}'),
    )
    assert found["traceId"] == found["id"].replace("-", "")
    spans = await receiver.wait_for(of_execution(found["id"]), 2)
    assert {span.trace_id for span in spans} == {found["traceId"]}
    (root,) = [span for span in spans if span.kind == SPAN_KIND_CONSUMER]
    assert root.parent_span_id == ""


@pytest.mark.parametrize(
    ("context", "path"),
    [
        ({"traceparent": f"00-{'0' * 32}-{'1' * 16}-01"}, "traceContext.traceparent"),
        ({"traceparent": "00-abc-01"}, "traceContext.traceparent"),
        ({"traceparent": traceparent()[0], "tracestate": "no equals"}, "traceContext.tracestate"),
    ],
)
async def test_a_bad_trace_context_is_refused_at_its_field(
    server: Server, context: dict[str, str], path: str
) -> None:
    result = await start(
        server,
        definition=definition('{key: one, kind: shell, with: {argv: ["true"]}}'),
        traceContext=context,
    )
    assert result["__typename"] == "ValidationError", result
    assert [error["path"] for error in result["fieldErrors"]] == [path]


async def test_every_run_of_a_batch_continues_the_callers_trace(server: Server) -> None:
    header, trace_id, _ = traceparent()
    transport = HTTPXAsyncTransport(
        url=server.graphql_http, timeout=30, headers={**server.headers, "traceparent": header}
    )
    document = """
    mutation($input: StartBatchInput!) {
      startBatch(input: $input) {
        __typename ... on BatchSuccess { batch { executions { traceId } } }
      }
    }
    """
    batch_input = {
        "definition": definition('{key: one, kind: shell, with: {argv: ["true"]}}'),
        "runs": [{}, {}],
    }
    async with Client(transport=transport) as session:
        result = await session.execute(
            GraphQLRequest(document, variable_values={"input": batch_input})
        )
    executions = result["startBatch"]["batch"]["executions"]
    assert [execution["traceId"] for execution in executions] == [trace_id, trace_id]


async def test_an_execution_stopped_before_any_runner_took_it_is_sent_too(
    server: Server, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    # The second waits in the queue behind the first (one at a time): stopping it ends it in the
    # API process, with no runner to hand it over.
    gate = tmp_path / "gate"
    lane = definition(
        gated_step("hold", gate),
        name="lane",
        extra=f'concurrency: {{key: "otel-{tmp_path.name}", limit: 1}}',
    )
    header, trace_id, caller_span = traceparent()
    first = await start(server, definition=lane)
    second = await start(server, {"traceparent": header}, definition=lane)
    second_id = second["execution"]["id"]
    await wait_for_status(server, first["execution"]["id"], {"RUNNING"})
    stopped = (await execute(server, STOP, {"id": second_id}))["stopExecution"]
    assert stopped["execution"]["status"] == "CANCELLED", stopped
    gate.touch()
    (root,) = await receiver.wait_for(of_execution(second_id), 1)
    assert (root.trace_id, root.parent_span_id, root.name) == (trace_id, caller_span, "lane")
    assert root.status_code == 0  # UNSET: cancelled is neither an error nor a success
    assert root.attributes["runwire.span.status"] == "CANCELLED"
    assert root.start_ns <= root.end_ns
    await wait_for_status(server, first["execution"]["id"], ENDED)


async def test_a_collector_that_is_down_neither_fails_nor_delays_runs(
    server: Server, receiver: OtlpReceiver
) -> None:
    quick = definition('{key: one, kind: shell, with: {argv: ["true"]}}')
    log_before = len(server.log.read_text())

    async def logged(text: str) -> str:
        """The server's log since the test began, once it holds `text`."""
        deadline = time.monotonic() + 10
        while text not in (found := server.log.read_text()[log_before:]):
            assert time.monotonic() < deadline, f"never logged: {text}"
            await asyncio.sleep(0.05)
        return found

    receiver.stop()
    try:
        for _ in range(2):
            # Sending happens on a thread of its own, after the run: nothing waits on it (each
            # post gives up after 1 s here), so a run takes what a shell `true` takes.
            started = time.monotonic()
            found = await run(server, definition=quick)
            assert found["status"] == "SUCCEEDED"
            assert time.monotonic() - started < 10
        await logged("did not take")
    finally:
        receiver.start()
    found = await run(server, definition=quick)
    assert len(await receiver.wait_for(of_execution(found["id"]), 2)) == 2
    log = await logged("answers again")
    # Said once, however many batches it refused meanwhile.
    assert log.count("did not take") == 1, log
    assert "Traceback" not in log
