"""RunwireClient against a real server: every call, typed results and typed errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from runwire_client import (
    AuthenticationError,
    ConnectionFailedError,
    Execution,
    ExecutionFilter,
    ExecutionMode,
    ExecutionStatus,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    RunwireClient,
    StepStatus,
    ValidationError,
)
from tests.support.graphql import definition, execute
from tests.support.server import Server, free_port

# Every call's typed result from a Postgres-backed server too: asyncpg gives the server typed
# rows (timestamps, JSON, the trace's spans) where SQLite gives it text.
SERVER_BACKENDS = ("sqlite", "postgres")


@pytest.fixture
async def client(server: Server) -> AsyncIterator[RunwireClient]:
    async with RunwireClient(server.url, server.token) as found:
        yield found


async def _until(client: RunwireClient, execution_id: str, *statuses: str) -> Execution:
    async with asyncio.timeout(30):
        while (found := await client.get(execution_id)).status not in statuses:
            await asyncio.sleep(0.05)
    return found


async def _until_step(client: RunwireClient, execution_id: str, key: str, status: str) -> None:
    async with asyncio.timeout(30):
        while not any(
            step.key == key and step.status == status
            for step in (await client.get(execution_id)).steps
        ):
            await asyncio.sleep(0.05)


async def test_start_a_scenario_and_get_it_with_its_steps(client: RunwireClient) -> None:
    started = await client.start("hello", inputs={"name": "client"}, labels=["from-client"])
    assert isinstance(started, Execution)
    assert started.status in {ExecutionStatus.QUEUED, ExecutionStatus.RUNNING}
    assert started.scenario is not None
    assert started.scenario.name == "hello"
    assert started.inputs == {"name": "client"}
    assert started.labels == ("from-client",)
    assert started.mode is ExecutionMode.FULL
    assert started.queued_at.tzinfo is not None
    assert started.steps == ()  # mutations return the execution without its steps

    done = await _until(client, started.id, "SUCCEEDED", "FAILED")
    assert done.status is ExecutionStatus.SUCCEEDED
    assert done.status.is_terminal
    assert done.duration_ms is not None
    assert done.last_seq >= 4
    [greet] = done.steps
    assert (greet.key, greet.kind, greet.status, greet.attempt) == (
        "greet",
        "shell",
        StepStatus.SUCCEEDED,
        1,
    )
    assert greet.exit_code == 0
    assert greet.finished_at is not None
    assert greet.started_at is not None
    assert greet.finished_at >= greet.started_at


async def test_an_inline_definition_with_options(client: RunwireClient) -> None:
    text = definition("{key: a, kind: shell, with: {argv: [echo, inline]}}", name="inline-opts")
    started = await client.start(
        definition=text, priority=3, timeout_seconds=30, idempotency_key="client-opts-1"
    )
    assert started.name == "inline-opts"
    assert started.scenario is None
    assert started.priority == 3
    assert started.idempotency_key == "client-opts-1"
    again = await client.start(
        definition=text, priority=3, timeout_seconds=30, idempotency_key="client-opts-1"
    )
    assert again.id == started.id  # the idempotency key returned the first execution


async def test_history_iterates_every_page_newest_first(client: RunwireClient) -> None:
    label = f"paging-{datetime.now(UTC).timestamp()}"
    text = definition("{key: a, kind: shell, with: {argv: [echo, page]}}")
    started = [(await client.start(definition=text, labels=[label])).id for _ in range(7)]

    only_these = ExecutionFilter(label=label)
    first = await client.history_page(only_these, first=3)
    assert len(first.executions) == 3
    assert first.has_next_page
    assert first.end_cursor is not None
    second = await client.history_page(only_these, first=3, after=first.end_cursor)
    assert {e.id for e in first.executions}.isdisjoint(e.id for e in second.executions)

    found = [execution.id async for execution in client.history(only_these, page_size=3)]
    assert found == list(reversed(started))  # all seven, newest first, each once

    none = ExecutionFilter(label=label, statuses=[ExecutionStatus.PAUSED])
    assert [e async for e in client.history(none)] == []


async def test_history_stops_fetching_when_the_caller_stops(
    client: RunwireClient, server: Server
) -> None:
    label = f"lazy-{datetime.now(UTC).timestamp()}"
    text = definition("{key: a, kind: shell, with: {argv: [echo, lazy]}}")
    for _ in range(4):
        await client.start(definition=text, labels=[label])
    pages = client.history(ExecutionFilter(label=label), page_size=2)
    first = await anext(pages)
    await pages.aclose()
    assert label in first.labels


async def test_trace_is_a_tree_of_typed_spans(client: RunwireClient) -> None:
    text = definition(
        "{key: one, kind: shell, with: {argv: [echo, one]}}",
        "{key: two, kind: sleep, with: {seconds: 0.05}}",
    )
    started = await client.start(definition=text)
    await _until(client, started.id, "SUCCEEDED")

    trace = await client.trace(started.id)
    assert trace.execution_id == started.id
    assert trace.status is ExecutionStatus.SUCCEEDED
    root, *steps = trace.spans
    assert root.parent_id is None
    assert root.kind == "execution"
    assert [(s.name, s.parent_id, s.status) for s in steps] == [
        ("one", root.id, "SUCCEEDED"),
        ("two", root.id, "SUCCEEDED"),
    ]
    assert trace.total_duration_ms is not None
    assert trace.tokens is None  # nothing reported tokens


async def test_stop_pause_resume(client: RunwireClient) -> None:
    text = definition(
        "{key: first, kind: sleep, with: {seconds: 0.6}}",
        "{key: second, kind: sleep, with: {seconds: 0.05}}",
    )
    started = await client.start(definition=text)
    await _until_step(client, started.id, "first", "RUNNING")

    pausing = await client.pause(started.id, reason="lunch")
    assert pausing.status is ExecutionStatus.PAUSING
    await _until(client, started.id, "PAUSED")
    with pytest.raises(InvalidTransitionError) as twice:
        await client.pause(started.id)
    assert twice.value.current_status == "PAUSED"
    assert twice.value.error_type == "InvalidTransitionError"

    await client.resume(started.id)
    done = await _until(client, started.id, "SUCCEEDED", "FAILED")
    assert done.status is ExecutionStatus.SUCCEEDED

    long = await client.start(definition=definition("{key: a, kind: sleep, with: {seconds: 30}}"))
    await _until(client, long.id, "RUNNING")
    stopping = await client.stop(long.id, reason="enough")
    assert stopping.status in {ExecutionStatus.STOPPING, ExecutionStatus.CANCELLED}
    stopped = await _until(client, long.id, "CANCELLED")
    assert stopped.steps[0].status is StepStatus.CANCELLED
    with pytest.raises(InvalidTransitionError) as again:
        await client.stop(long.id)
    assert again.value.current_status == "CANCELLED"


async def test_retry_and_skip_steps(client: RunwireClient, tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    text = definition(
        f'{{key: check, kind: shell, with: {{argv: ["test", "-f", "{marker}"]}}}}',
        '{key: report, kind: shell, with: {argv: ["echo", "done"]}}',
    )
    first = await client.start(definition=text)
    failed = await _until(client, first.id, "FAILED")
    assert failed.error is not None
    assert "check" in failed.error

    with pytest.raises(NotFoundError):
        await client.retry_step(first.id, "nope")
    marker.touch()
    retried = await client.retry_step(first.id, "check")
    assert retried.id == first.id
    done = await _until(client, first.id, "SUCCEEDED", "FAILED")
    assert done.status is ExecutionStatus.SUCCEEDED
    assert [(s.key, s.attempt, s.status) for s in done.steps] == [
        ("check", 1, StepStatus.FAILED),
        ("check", 2, StepStatus.SUCCEEDED),
        ("report", 1, StepStatus.SUCCEEDED),
    ]

    marker.unlink()
    second = await client.start(definition=text)
    await _until(client, second.id, "FAILED")
    await client.skip_step(second.id, "check")
    skipped = await _until(client, second.id, "SUCCEEDED", "FAILED")
    assert skipped.status is ExecutionStatus.SUCCEEDED
    # The failed attempt is kept; the skip is the step's latest state.
    assert [(s.key, s.status) for s in skipped.steps][-2:] == [
        ("check", StepStatus.SKIPPED),
        ("report", StepStatus.SUCCEEDED),
    ]


async def test_validation_errors_name_the_fields(client: RunwireClient) -> None:
    with pytest.raises(ValidationError) as bad_inputs:
        await client.start("countdown", inputs={"count": "three", "bogus": 1})
    assert bad_inputs.value.error_type == "ValidationError"
    assert {"inputs.count", "inputs.bogus"} <= {e.path for e in bad_inputs.value.field_errors}
    assert "inputs.count" in bad_inputs.value.message

    text = definition('{key: a, kind: shell, with: {argv: "echo hi"}}')
    with pytest.raises(ValidationError) as bad_definition:
        await client.start(definition=text)
    [error] = bad_definition.value.field_errors
    assert error.path == "steps[0].with.argv"
    assert "list of strings" in error.message

    with pytest.raises(ValidationError) as both:
        await client.start("hello", definition=text)
    assert both.value.field_errors[0].path == "input"


async def test_missing_things_are_not_found(client: RunwireClient) -> None:
    with pytest.raises(NotFoundError) as scenario:
        await client.start("does-not-exist")
    assert scenario.value.message == "scenario does-not-exist not found"
    assert scenario.value.error_type == "NotFoundError"
    for call in (client.get, client.trace, client.stop, client.pause, client.resume):
        with pytest.raises(NotFoundError, match="no-such-id"):
            await call("no-such-id")


async def test_other_server_errors_are_query_errors(client: RunwireClient) -> None:
    with pytest.raises(QueryError, match="after: not a cursor") as bad_cursor:
        await client.history_page(after="garbage!")
    assert bad_cursor.value.error_type == "GraphQLError"
    assert bad_cursor.value.errors[0]["path"] == ["executions"]
    with pytest.raises(ValueError, match="page_size"):
        await anext(client.history(page_size=0))


async def test_a_bad_token_is_an_authentication_error(server: Server) -> None:
    async with RunwireClient(server.url, "not-a-token") as client:
        with pytest.raises(AuthenticationError) as refused:
            await client.get("anything")
        assert refused.value.error_type == "Unauthenticated"
        with pytest.raises(AuthenticationError):
            await anext(client.follow("anything"))


async def test_a_role_without_the_permission_is_denied(server: Server) -> None:
    created = await execute(
        server,
        """mutation { createApiToken(input: {name: "client-viewer", role: VIEWER}) {
             ... on CreateApiTokenSuccess { secret } } }""",
    )
    viewer = created["createApiToken"]["secret"]
    async with RunwireClient(server.url, viewer) as client:
        with pytest.raises(PermissionDeniedError) as denied:
            await client.start("hello")
        assert denied.value.error_type == "PermissionDeniedError"
        assert denied.value.permission == "execution:write"
        assert denied.value.role == "viewer"
        # Reading is allowed.
        assert [e async for e in client.history(ExecutionFilter(label="none-has-it"))] == []


async def test_an_unreachable_server_is_a_connection_error() -> None:
    async with RunwireClient(f"http://127.0.0.1:{free_port()}", "token") as client:
        with pytest.raises(ConnectionFailedError) as unreachable:
            await client.get("x")
    assert unreachable.value.error_type == "ConnectionError"


def test_urls_are_checked_and_the_token_stays_out_of_them() -> None:
    base = RunwireClient("http://127.0.0.1:8000", "t")
    assert base.url == "http://127.0.0.1:8000/graphql"
    assert RunwireClient("https://runwire.example/graphql/", "t").url == (
        "https://runwire.example/graphql"
    )
    assert "t" not in repr(RunwireClient("http://h:1", "secret-token")).split("h:1")[1]
    assert "secret-token" not in repr(RunwireClient("http://h:1", "secret-token"))
    for bad in ("ftp://h/graphql", "http://h/graphql?token=x", "http://user:pw@h/", "h:8000"):
        with pytest.raises(ValueError, match="URL"):
            RunwireClient(bad, "t")
    with pytest.raises(ValueError, match="token"):
        RunwireClient("http://h:1", "")


async def test_calls_outside_the_context_are_refused(server: Server) -> None:
    client = RunwireClient(server.url, server.token)
    with pytest.raises(RuntimeError, match="async with"):
        await client.get("x")


async def test_the_token_never_reaches_a_log_line(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with RunwireClient(server.url, server.token) as client:
        started = await client.start("hello")
        events = [event async for event in client.follow(started.id)]
    assert events[-1].terminal
    log = caplog.text
    assert "connection_init" in log  # the socket's frames were logged, redacted
    assert '"query"' in log  # and the HTTP payloads
    assert server.token not in log
    assert server.token[:12] not in log
    assert server.token[-12:] not in log
