"""Big or odd input is refused fast, with a ValidationError that names the field and the limit.

On SQLite and Postgres: Postgres refuses NUL characters and lone surrogates that SQLite keeps
(its driver's error reached clients as "Internal error"), so both must answer the same error.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from tests.support.graphql import (
    START,
    STOP,
    definition,
    execute,
    start,
    wait_for_status,
    ws_transport,
)
from tests.support.server import Server

SERVER_BACKENDS = ("sqlite", "postgres")

QUICKLY_SECONDS = 2.0
SLEEP = "{key: a, kind: sleep, with: {seconds: 0}}"
SMALL = definition(SLEEP)


def _steps(count: int) -> str:
    return definition(*(f"{{key: s{i}, kind: sleep, with: {{seconds: 0}}}}" for i in range(count)))


async def _post(server: Server, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """POST with every non-ASCII character escaped, so a lone surrogate travels as `\\ud800`."""
    body = json.dumps({"query": query, "variables": variables}, ensure_ascii=True)
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            server.graphql_http,
            content=body,
            headers={**server.headers, "Content-Type": "application/json"},
        )
    assert response.status_code == 200, response.text
    assert "Internal error" not in response.text, response.text
    return dict(response.json())


async def _start_refused(server: Server, **input: Any) -> dict[str, str]:
    """Start refused with a ValidationError; its field errors by path."""
    found = (await _post(server, START, {"input": input}))["data"]["startExecution"]
    assert found["__typename"] == "ValidationError", found
    return {error["path"]: error["message"] for error in found["fieldErrors"]}


# --- sizes ----------------------------------------------------------------------------------


async def test_a_907_kb_definition_is_refused_fast_saying_the_limit(server: Server) -> None:
    text = _steps(18_000)
    size = len(text.encode())
    assert size > 900_000
    began = time.monotonic()
    errors = await _start_refused(server, definition=text)
    assert time.monotonic() - began < QUICKLY_SECONDS
    assert errors == {"definition": f"must be at most 200,000 bytes (got {size:,})"}


async def test_a_scenario_over_the_size_limit_is_not_saved(server: Server) -> None:
    mutation = (
        "mutation($d: String!) { createScenario(definition: $d) { __typename"
        " ... on ValidationError { fieldErrors { path message } } } }"
    )
    text = _steps(5_000)
    found = (await _post(server, mutation, {"d": text}))["data"]["createScenario"]
    assert found["fieldErrors"] == [
        {"path": "definition", "message": f"must be at most 200,000 bytes (got {len(text):,})"}
    ]


async def test_more_steps_than_the_limit_are_refused(server: Server) -> None:
    errors = await _start_refused(server, definition=_steps(1_001))
    assert errors == {"steps": "must be at most 1,000 steps (got 1,001)"}


async def test_inputs_labels_and_reasons_over_their_limits_say_the_limit(server: Server) -> None:
    errors = await _start_refused(server, scenario="hello", inputs={"name": "x" * 100_000})
    assert errors == {"inputs": "must be at most 100,000 bytes of JSON (got 100,011)"}
    deep: Any = "x"
    for _ in range(33):
        deep = [deep]
    errors = await _start_refused(server, scenario="hello", inputs={"name": deep})
    assert errors == {"inputs": "must be nested at most 32 levels deep"}
    errors = await _start_refused(
        server, definition=SMALL, labels=[f"l{n}" for n in range(21)] + ["y" * 201]
    )
    assert errors == {
        "labels": "must be at most 20 labels (got 22)",
        "labels[21]": "must be at most 200 characters (got 201)",
    }
    execution_id = await start(
        server, definition=definition("{key: a, kind: sleep, with: {seconds: 30}}")
    )
    stopped = (await _post(server, STOP, {"id": execution_id, "reason": "r" * 1_001}))["data"]
    assert stopped["stopExecution"]["__typename"] == "ValidationError"
    assert (
        stopped["stopExecution"]["message"]
        == "reason: must be at most 1,000 characters (got 1,001)"
    )
    await execute(server, STOP, {"id": execution_id, "reason": "done"})


async def test_big_definitions_are_parsed_off_the_event_loop(server: Server) -> None:
    """Two 1,000-step definitions (each about a second of parsing here) leave /health prompt."""
    text = _steps(1_000)
    lags: list[float] = []
    async with httpx.AsyncClient(timeout=60) as client:

        async def health_until(done: asyncio.Task[Any]) -> None:
            while not done.done():
                began = time.monotonic()
                response = await client.get(f"{server.url}/health")
                lags.append(time.monotonic() - began)
                assert response.status_code == 200
                await asyncio.sleep(0.01)

        await client.get(f"{server.url}/health")  # connected before the clock starts
        # One step of each runs (mode STEP): the parse is what is measured, not the runner.
        starts = asyncio.gather(
            *(start(server, definition=text, mode="STEP", stepKey=f"s{n}") for n in range(2))
        )
        task = asyncio.ensure_future(starts)
        await health_until(task)
        ids = await task
    assert len(set(ids)) == 2
    assert len(lags) >= 3, lags
    assert max(lags) < 0.4, f"/health took up to {max(lags):.2f}s while definitions parsed"


# --- strings no database can store ----------------------------------------------------------

NUL, SURROGATE = "a\x00b", "a\ud800b"


@pytest.mark.parametrize(
    ("input", "path", "problem"),
    [
        ({"definition": SMALL, "labels": ["ok", NUL]}, "labels[1]", "NUL"),
        ({"definition": SMALL, "labels": [SURROGATE]}, "labels[0]", "lone surrogate (\\ud800)"),
        ({"scenario": "hello", "inputs": {"name": NUL}}, "inputs.name", "NUL"),
        ({"scenario": "hello", "inputs": {"name": [SURROGATE]}}, "inputs.name[0]", "surrogate"),
        ({"scenario": "hello", "inputs": {"n\x00": 1}}, "inputs.n\\u0000", "key must not"),
        ({"definition": SMALL, "idempotencyKey": NUL}, "idempotencyKey", "NUL"),
        ({"definition": SMALL + "\n# \x00"}, "definition", "NUL"),
        # Escapes inside the definition's own YAML or JSON, named at their place in it.
        (
            {"definition": definition('{key: a, kind: shell, with: {argv: [echo, "a\\0"]}}')},
            "steps[0].with.argv[1]",
            "NUL",
        ),
        (
            {"definition": SMALL + '\ndescription: "\\ud800"'},
            "description",
            "lone surrogate",
        ),
        # Not a string, but odd: Python refuses to convert an integer of over 4,300 digits.
        ({"definition": SMALL + "\ndescription: 1" + "0" * 5_000}, "", "Exceeds the limit"),
    ],
)
async def test_unstorable_strings_are_validation_errors_naming_the_field(
    server: Server, input: dict[str, Any], path: str, problem: str
) -> None:
    errors = await _start_refused(server, **input)
    assert list(errors) == [path]
    assert problem in errors[path]


@pytest.mark.parametrize("reason", [NUL, SURROGATE])
async def test_an_unstorable_stop_reason_is_a_validation_error(server: Server, reason: str) -> None:
    execution_id = await start(
        server, definition=definition("{key: a, kind: sleep, with: {seconds: 30}}")
    )
    found = (await _post(server, STOP, {"id": execution_id, "reason": reason}))["data"]
    assert found["stopExecution"]["__typename"] == "ValidationError"
    assert found["stopExecution"]["message"].startswith("reason: must not contain")
    await execute(server, STOP, {"id": execution_id, "reason": "done"})


async def test_unstorable_arguments_of_queries_subscriptions_and_admin_mutations_are_named(
    server: Server,
) -> None:
    found = await _post(server, "query($id: ID!) { execution(id: $id) { id } }", {"id": NUL})
    assert found["errors"][0]["message"] == "id: must not contain a NUL character (\\u0000)"
    # An id inside a cursor is checked as the cursor is read.
    cursor = base64.urlsafe_b64encode(json.dumps(["2030-01-01T00:00:00+00:00", SURROGATE]).encode())
    found = await _post(
        server,
        "query($after: String) { executions(after: $after) { edges { cursor } } }",
        {"after": cursor.decode()},
    )
    assert found["errors"][0]["message"] == "after: not a cursor from this API"
    found = await _post(
        server,
        "mutation($s: String!) { setMemberRole(subject: $s, role: VIEWER) {"
        " ... on ValidationError { fieldErrors { path message } } } }",
        {"s": SURROGATE},
    )
    [error] = found["data"]["setMemberRole"]["fieldErrors"]
    assert error["path"] == "subject"
    subscription = "subscription($id: ID!) { executionEvents(executionId: $id) { lastSeq } }"
    async with Client(transport=ws_transport(server)) as session:
        with pytest.raises(TransportQueryError, match=r"executionId: must not contain a NUL"):
            async for _ in session.subscribe(
                GraphQLRequest(subscription, variable_values={"id": NUL})
            ):
                pass


# --- what steps produce ---------------------------------------------------------------------


async def test_a_step_printing_nul_is_stored_and_read_back(server: Server) -> None:
    execution_id = await start(
        server,
        definition=definition(
            """{key: a, kind: shell, with: {argv: [printf, 'a\\0b']}}""",
            # Its stdout parsed as JSON holds a lone surrogate, which the failure names.
            """{key: b, kind: shell, with: {argv: [echo, '{"x": "\\ud800"}']},"""
            """ expect: {json: {"$.x": "y"}}}""",
        ),
    )
    ended = await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})
    assert ended["status"] == "FAILED"
    query = """query($id: ID!) { execution(id: $id) { steps { key status output error }
      events { ... on OutputChunk { stepKey text } } } }"""
    found = (await execute(server, query, {"id": execution_id}))["execution"]
    steps = {step["key"]: step for step in found["steps"]}
    assert steps["a"]["status"] == "SUCCEEDED"
    assert steps["a"]["output"]["stdout"] == "a\x00b"
    assert "a\x00b" in "".join(e["text"] for e in found["events"] if e.get("stepKey") == "a")
    assert steps["b"]["status"] == "FAILED"
    assert steps["b"]["error"] == 'expect.json[$.x]: expected "y", got "\ufffd"'


@pytest.mark.parametrize("execution_id", ["%00", "a%ED%A0%80b"])
async def test_an_sse_stream_of_an_unstorable_id_is_not_found(
    server: Server, execution_id: str
) -> None:
    # No execution has an id with a NUL or a lone surrogate; Postgres refused the lookup (500).
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{server.url}/executions/{execution_id}/events", headers=server.headers
        )
    assert response.status_code == 404, response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "queued_at",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2030-01-01T00:00:00"],
)
async def test_a_cursor_whose_time_no_database_can_take_is_not_a_cursor(
    server: Server, queued_at: str
) -> None:
    # Ours carry an aware time that UTC can hold: at the calendar's edges an offset overflows.
    cursor = base64.urlsafe_b64encode(json.dumps([queued_at, "x"]).encode())
    found = await _post(
        server,
        "query($after: String) { executions(after: $after) { edges { cursor } } }",
        {"after": cursor.decode()},
    )
    assert found.get("errors"), found
    assert found["errors"][0]["message"] == "after: not a cursor from this API"
