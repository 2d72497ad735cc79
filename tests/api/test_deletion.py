"""deleteExecution through a real server: permission, tenant isolation, refusal while running,
and nothing of the execution left (events, steps, artifacts), while its audit rows stay."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import httpx
import pytest
from gql.transport.exceptions import TransportQueryError
from tests.support.graphql import definition, execute, follow, start, wait_for_status
from tests.support.server import Server

# The delete touches every table keyed by an execution, in SQL that differs per database.
SERVER_BACKENDS = ("sqlite", "postgres")
SERVER_SETTINGS = {"RUNWIRE_GRACE_SECONDS": "0.2"}

DELETE = """
mutation($id: ID!) {
  deleteExecution(id: $id) {
    __typename
    ... on DeleteExecutionSuccess { id }
    ... on Error { message }
    ... on InvalidTransitionError { currentStatus }
    ... on PermissionDeniedError { permission role }
  }
}
"""
STEPS = """
query($id: ID!) {
  execution(id: $id) { id status steps { key artifacts { id url } } }
}
"""
ACTIVITIES = """
query($id: ID!) { activities(executionId: $id) { activity { action actor result } } }
"""
ARTIFACT = (
    "{key: keep, kind: shell, with: {shell: true, command: "
    + json.dumps(
        "printf '%s\\n' '"
        + json.dumps({"type": "artifact", "name": "a.txt", "text": "kept"})
        + "' >&3"
    )
    + "}}"
)
HOLD = definition("{key: hold, kind: sleep, with: {seconds: 120}}", name="hold")


def _cli(server: Server, *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "runwire.cli", *arguments],
        env=server.env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


async def _delete(server: Server, execution_id: str, token: str | None = None) -> dict[str, Any]:
    result = await execute(server, DELETE, {"id": execution_id}, token=token)
    payload: dict[str, Any] = result["deleteExecution"]
    return payload


async def test_an_ended_execution_is_deleted_with_everything_kept_about_it(
    server: Server,
) -> None:
    execution_id = await start(server, definition=definition(ARTIFACT), labels=["doomed"])
    assert (await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"}))[
        "status"
    ] == "SUCCEEDED"
    found = (await execute(server, STEPS, {"id": execution_id}))["execution"]
    [artifact] = found["steps"][0]["artifacts"]
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        assert (await http.get(artifact["url"])).status_code == 200
        events = await http.get(f"/executions/{execution_id}/events", headers=server.headers)
        assert events.status_code == 200

        assert await _delete(server, execution_id) == {
            "__typename": "DeleteExecutionSuccess",
            "id": execution_id,
        }

        assert (await execute(server, STEPS, {"id": execution_id}))["execution"] is None
        # The artifact's content went with its row; the stream knows the id no more.
        assert (await http.get(artifact["url"])).status_code == 404
        gone = await http.get(f"/executions/{execution_id}/events", headers=server.headers)
        assert gone.status_code == 404
    # The GraphQL subscription for it is refused as for any unknown id.
    with pytest.raises(TransportQueryError) as refused:
        await follow(server, execution_id)
    assert refused.value.errors is not None
    assert refused.value.errors[0]["extensions"]["code"] == "NOT_FOUND", refused.value.errors
    listed = await execute(
        server, '{ executions(filter: {label: "doomed"}) { edges { node { id } } } }'
    )
    assert listed["executions"]["edges"] == []
    # Deleting it again: not found, like any unknown id.
    again = await _delete(server, execution_id)
    assert again["__typename"] == "NotFoundError", again
    # The audit trail outlives what it records: who started it, who deleted it.
    trail = await execute(server, ACTIVITIES, {"id": execution_id})
    actions = [entry["activity"] for entry in trail["activities"]]
    assert {
        "action": "deleteExecution",
        "actor": actions[0]["actor"],
        "result": "DeleteExecutionSuccess",
    } in actions
    assert "startExecution" in {a["action"] for a in actions}


async def test_a_running_execution_is_refused_until_it_ends(server: Server) -> None:
    execution_id = await start(server, definition=HOLD)
    await wait_for_status(server, execution_id, {"RUNNING"})
    refused = await _delete(server, execution_id)
    assert refused["__typename"] == "InvalidTransitionError", refused
    assert refused["currentStatus"] == "RUNNING"
    assert "stop it first" in refused["message"]
    assert (await execute(server, STEPS, {"id": execution_id}))["execution"]["status"] == "RUNNING"

    await execute(
        server, "mutation($id: ID!) { stopExecution(id: $id) { __typename } }", {"id": execution_id}
    )
    await wait_for_status(server, execution_id, {"CANCELLED"})
    assert (await _delete(server, execution_id))["__typename"] == "DeleteExecutionSuccess"


async def test_only_test_delete_may_delete_and_other_workspaces_see_not_found(
    server: Server,
) -> None:
    execution_id = await start(
        server, definition=definition("{key: a, kind: sleep, with: {seconds: 0}}")
    )
    await wait_for_status(server, execution_id, {"SUCCEEDED"})

    editor = await asyncio.to_thread(
        _cli, server, "token", "create", "--name", "deletion-editor", "--role", "editor"
    )
    denied = await _delete(server, execution_id, token=editor)
    assert denied["__typename"] == "PermissionDeniedError", denied
    assert denied["permission"] == "test:delete"

    await asyncio.to_thread(_cli, server, "workspace", "create", "deletion-b")
    other = await asyncio.to_thread(
        _cli,
        server,
        "token",
        "create",
        "--workspace",
        "deletion-b",
        "--name",
        "b",
        "--role",
        "admin",
    )
    elsewhere = await _delete(server, execution_id, token=other)
    missing = await _delete(server, "00000000-0000-0000-0000-000000000000", token=other)
    # Exactly the answer an id that exists nowhere gets, but for the id itself.
    assert elsewhere == {
        **missing,
        "message": missing["message"].replace(missing_id(), execution_id),
    }
    assert elsewhere["__typename"] == "NotFoundError"
    assert (await execute(server, STEPS, {"id": execution_id}))["execution"]["id"] == execution_id


def missing_id() -> str:
    return "00000000-0000-0000-0000-000000000000"


async def test_a_batch_counts_what_is_left_of_it(server: Server) -> None:
    started = await execute(
        server,
        "mutation($input: StartBatchInput!) { startBatch(input: $input) {"
        " __typename ... on BatchSuccess { batch { id executions { id } } } } }",
        {"input": {"scenario": "hello", "runs": [{}, {}], "concurrency": 2}},
    )
    batch = started["startBatch"]["batch"]
    first, second = (execution["id"] for execution in batch["executions"])
    for execution_id in (first, second):
        await wait_for_status(server, execution_id, {"SUCCEEDED"})
    assert (await _delete(server, first))["__typename"] == "DeleteExecutionSuccess"
    found = await execute(
        server,
        "query($id: ID!) { batch(id: $id) { total succeeded progress executions { id } } }",
        {"id": batch["id"]},
    )
    assert found["batch"] == {
        "total": 1,
        "succeeded": 1,
        "progress": 1.0,
        "executions": [{"id": second}],
    }


SET_POLICY = """
mutation($input: RetentionPolicyInput!) {
  setRetentionPolicy(input: $input) {
    __typename
    ... on SetRetentionPolicySuccess { policy { keepDays keepExecutions keepFailedDays updatedBy } }
    ... on ValidationError { fieldErrors { path message } }
  }
}
"""


async def test_a_retention_policy_is_validated_stored_and_read_back(server: Server) -> None:
    bad = await execute(server, SET_POLICY, {"input": {"keepDays": 0, "keepFailedDays": 5}})
    assert bad["setRetentionPolicy"]["__typename"] == "ValidationError"
    assert [e["path"] for e in bad["setRetentionPolicy"]["fieldErrors"]] == ["keepDays"]
    shorter = await execute(server, SET_POLICY, {"input": {"keepDays": 30, "keepFailedDays": 5}})
    assert shorter["setRetentionPolicy"]["fieldErrors"] == [
        {"path": "keepFailedDays", "message": "must be at least keepDays (30)"}
    ]
    assert (await execute(server, "{ retentionPolicy { keepDays updatedAt } }")) == {
        "retentionPolicy": {"keepDays": None, "updatedAt": None}
    }

    # Long enough that nothing this module ran is swept.
    good = await execute(server, SET_POLICY, {"input": {"keepDays": 3650, "keepFailedDays": 3650}})
    policy = good["setRetentionPolicy"]["policy"]
    assert policy["keepDays"] == 3650
    assert policy["keepExecutions"] is None
    read = await execute(server, "{ retentionPolicy { keepDays keepFailedDays updatedBy } }")
    assert read["retentionPolicy"] == {
        "keepDays": 3650,
        "keepFailedDays": 3650,
        "updatedBy": policy["updatedBy"],
    }
    assert policy["updatedBy"]
    cleared = await execute(server, SET_POLICY, {"input": {}})
    assert cleared["setRetentionPolicy"]["policy"]["keepDays"] is None
