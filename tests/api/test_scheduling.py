"""Test-panel modes, idempotent starts, concurrency keys, batches and holding queued executions."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from tests.support.graphql import START, STOP, definition, execute, start, wait_for_status
from tests.support.server import Server

SERVER_SETTINGS = {"RUNWIRE_RUNNER_SLOTS": "8", "RUNWIRE_GRACE_SECONDS": "0.2"}
# Concurrent starts with one idempotency key really race only on Postgres (SQLite's single
# writer queues them): there the unique index decides. Concurrency keys and batch limits are
# counted in the claim under its advisory lock, and holding a queued execution locks its row.
SERVER_BACKENDS = ("sqlite", "postgres")

TIMES = """
query($id: ID!) {
  execution(id: $id) { status startedAt finishedAt mode stepKey
    steps { key attempt status output } }
}
"""

LOGIN_THEN_CALL = """
name: panel
inputs:
  phone: {type: string}
steps:
  - {key: login, kind: shell, with: {argv: ["echo", "real-token"]}}
  - key: call
    kind: shell
    with: {argv: ["echo", "{{ inputs.phone }}", "{{ steps.login.output.token }}"]}
"""


def _spans(found: list[dict[str, Any]]) -> list[tuple[datetime, datetime]]:
    return [
        (datetime.fromisoformat(item["startedAt"]), datetime.fromisoformat(item["finishedAt"]))
        for item in found
    ]


def _most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in edges:
        running += change
        most = max(most, running)
    return most


async def _details(server: Server, ids: list[str]) -> list[dict[str, Any]]:
    return [(await execute(server, TIMES, {"id": i}))["execution"] for i in ids]


async def test_step_in_context_runs_one_step_with_upstream_outputs(server: Server) -> None:
    execution_id = await start(
        server,
        definition=LOGIN_THEN_CALL,
        inputs={"phone": "+15550100"},
        mode="STEP_IN_CONTEXT",
        stepKey="call",
        upstream={"login": {"token": "given-token"}},
    )
    await wait_for_status(server, execution_id, {"SUCCEEDED"})

    found = (await execute(server, TIMES, {"id": execution_id}))["execution"]
    assert found["mode"] == "STEP_IN_CONTEXT"
    assert found["stepKey"] == "call"
    assert [(s["key"], s["status"]) for s in found["steps"]] == [("call", "SUCCEEDED")]
    assert found["steps"][0]["output"]["stdout"] == "+15550100 given-token\n"


async def test_step_mode_names_the_missing_upstream_expression(server: Server) -> None:
    execution_id = await start(
        server,
        definition=LOGIN_THEN_CALL,
        inputs={"phone": "+15550100"},
        mode="STEP",
        stepKey="call",
    )
    failed = await wait_for_status(server, execution_id, {"FAILED"})

    assert "steps.login.output.token" in failed["error"]
    assert "steps[1].with.argv[2]" in failed["error"]


async def test_bad_test_panel_requests_name_the_field(server: Server) -> None:
    cases = [
        ({"mode": "STEP_IN_CONTEXT", "stepKey": "call"}, "upstream.login"),
        ({"mode": "STEP", "stepKey": "nope"}, "stepKey"),
        ({"mode": "STEP"}, "stepKey"),
        ({"stepKey": "call"}, "stepKey"),
        ({"mode": "STEP", "stepKey": "call", "upstream": {}}, "upstream"),
        ({"mode": "STEP_IN_CONTEXT", "stepKey": "call", "upstream": [1]}, "upstream"),
    ]
    for extra, path in cases:
        variables = {"input": {"definition": LOGIN_THEN_CALL, "inputs": {"phone": "1"}, **extra}}
        result = (await execute(server, START, variables))["startExecution"]
        assert result["__typename"] == "ValidationError", extra
        assert path in [error["path"] for error in result["fieldErrors"]], (extra, result)


async def test_concurrent_starts_with_one_idempotency_key_create_one_execution(
    server: Server,
) -> None:
    text = definition("{key: a, kind: sleep, with: {seconds: 0.05}}", name="idempotent")
    key = f"order-{datetime.now().timestamp()}"
    ids = await asyncio.gather(
        *(start(server, definition=text, idempotencyKey=key) for _ in range(12))
    )

    assert len(set(ids)) == 1
    history = await execute(
        server, "{ executions(first: 200) { edges { node { idempotencyKey } } } }"
    )
    keys = [edge["node"]["idempotencyKey"] for edge in history["executions"]["edges"]]
    assert keys.count(key) == 1

    other = (
        await execute(
            server,
            START,
            {"input": {"definition": text, "idempotencyKey": key, "labels": ["different"]}},
        )
    )["startExecution"]
    assert other["__typename"] == "ValidationError"
    assert other["fieldErrors"][0]["path"] == "idempotencyKey"


async def test_a_concurrency_key_serializes_executions_in_queue_order(server: Server) -> None:
    text = """
name: call-line
inputs:
  phone: {type: string}
concurrency: {key: "line-{{ inputs.phone }}", limit: 1}
steps:
  - {key: call, kind: sleep, with: {seconds: 0.5}}
"""
    same = [await start(server, definition=text, inputs={"phone": "100"}) for _ in range(3)]
    other = await start(server, definition=text, inputs={"phone": "200"})
    for execution_id in [*same, other]:
        await wait_for_status(server, execution_id, {"SUCCEEDED"})

    same_details = await _details(server, same)
    spans = _spans(same_details)
    assert _most_at_once(spans) == 1
    assert [start for start, _ in spans] == sorted(start for start, _ in spans)  # queue order
    other_span = _spans(await _details(server, [other]))[0]
    # Another key is not held back: it runs while the same key's executions take turns.
    assert _most_at_once([*spans, other_span]) == 2


async def test_a_batch_of_50_never_runs_more_than_its_concurrency(server: Server) -> None:
    text = definition("{key: a, kind: sleep, with: {seconds: 0.05}}", name="batched")
    document = """
mutation($input: StartBatchInput!) {
  startBatch(input: $input) {
    __typename
    ... on BatchSuccess { batch { id total concurrency } }
    ... on ValidationError { fieldErrors { path message } }
  }
}
"""
    runs = [{"inputs": {}, "labels": [f"run-{index}"]} for index in range(50)]
    started = (
        await execute(
            server, document, {"input": {"definition": text, "runs": runs, "concurrency": 5}}
        )
    )["startBatch"]
    assert started["__typename"] == "BatchSuccess", started
    batch_id = started["batch"]["id"]

    progress = "query($id: ID!) { batch(id: $id) { running succeeded progress total } }"
    async with asyncio.timeout(60):
        while True:
            batch = (await execute(server, progress, {"id": batch_id}))["batch"]
            assert batch["running"] <= 5
            if batch["succeeded"] == 50:
                break
            await asyncio.sleep(0.05)
    assert batch["progress"] == 1.0

    listed = """
query($id: ID!) { batch(id: $id) { executions(first: 100) { id startedAt finishedAt } } }
"""
    executions = (await execute(server, listed, {"id": batch_id}))["batch"]["executions"]
    assert len(executions) == 50
    assert _most_at_once(_spans(executions)) <= 5
    history = """
query($id: String!) { executions(filter: {batch: $id}, first: 100) { edges { node { id } } } }
"""
    found = (await execute(server, history, {"id": batch_id}))["executions"]["edges"]
    assert {edge["node"]["id"] for edge in found} == {item["id"] for item in executions}


async def test_bad_batch_runs_are_named_by_index(server: Server) -> None:
    text = definition(
        "{key: a, kind: sleep, with: {seconds: 0}}",
        name="typed",
        extra="inputs: {n: {type: integer}}",
    )
    document = """
mutation($input: StartBatchInput!) {
  startBatch(input: $input) {
    __typename
    ... on ValidationError { fieldErrors { path message } }
  }
}
"""
    runs = [{"inputs": {"n": 1}}, {"inputs": {"n": "two"}}, {"inputs": {}}]
    result = (
        await execute(
            server, document, {"input": {"definition": text, "runs": runs, "concurrency": 0}}
        )
    )["startBatch"]

    assert result["__typename"] == "ValidationError"
    assert sorted(error["path"] for error in result["fieldErrors"]) == [
        "concurrency",
        "runs[1].inputs.n",
        "runs[2].inputs.n",
    ]


async def test_a_paused_queued_execution_is_held_until_resumed(server: Server) -> None:
    # Fill every slot, so the next execution waits in the queue.
    blocker = definition('{key: block, kind: shell, with: {argv: ["sleep", "60"]}}')
    blockers = [await start(server, definition=blocker) for _ in range(8)]
    for execution_id in blockers:
        await wait_for_status(server, execution_id, {"RUNNING"})
    held = await start(server, definition=definition("{key: a, kind: sleep, with: {seconds: 0}}"))
    pause = """
mutation($id: ID!) { pauseExecution(id: $id) {
  __typename ... on PauseExecutionSuccess { execution { status } } } }
"""
    paused = (await execute(server, pause, {"id": held}))["pauseExecution"]
    assert paused == {"__typename": "PauseExecutionSuccess", "execution": {"status": "PAUSED"}}

    for execution_id in blockers:
        await execute(server, STOP, {"id": execution_id})
    later = await start(server, definition=definition("{key: a, kind: sleep, with: {seconds: 0}}"))
    await wait_for_status(server, later, {"SUCCEEDED"})
    assert (await wait_for_status(server, held, {"PAUSED"}))["status"] == "PAUSED"

    resume = "mutation($id: ID!) { resumeExecution(id: $id) { __typename } }"
    assert (await execute(server, resume, {"id": held}))["resumeExecution"] == {
        "__typename": "ResumeExecutionSuccess"
    }
    await wait_for_status(server, held, {"SUCCEEDED"})
