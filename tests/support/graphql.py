"""Real GraphQL clients for the API tests: gql over HTTP and over graphql-transport-ws."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import websockets
from gql import Client, GraphQLRequest
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport
from tests.support.server import Server
from websockets.asyncio.client import ClientConnection, connect

START = """
mutation Start($input: StartExecutionInput!) {
  startExecution(input: $input) {
    __typename
    ... on StartExecutionSuccess { execution { id status } }
    ... on Error { message }
    ... on ValidationError { fieldErrors { path message } }
  }
}
"""

STOP = """
mutation Stop($id: ID!, $reason: String) {
  stopExecution(id: $id, reason: $reason) {
    __typename
    ... on StopExecutionSuccess { execution { id status } }
    ... on Error { message }
    ... on InvalidTransitionError { currentStatus }
  }
}
"""

FOLLOW = """
subscription Follow($id: ID!, $after: Int!) {
  executionEvents(executionId: $id, afterSeq: $after) {
    lastSeq
    events {
      seq type stepKey attempt
      ... on ExecutionStatusChanged { status: executionStatus error reason }
      ... on StepStatusChanged { stepStatus exitCode error retryInSeconds reason }
      ... on OutputChunk { stream text }
    }
  }
}
"""


def ws_transport(server: Server, token: str | None = None) -> WebsocketsTransport:
    """graphql-transport-ws with the token in connection_init (the server's admin token)."""
    # gql prefers the legacy graphql-ws subprotocol unless told otherwise.
    return WebsocketsTransport(
        url=server.graphql_ws,
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"Authorization": f"Bearer {token or server.token}"},
    )


async def execute(
    server: Server,
    document: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    """One query or mutation over HTTP with gql, as the server's admin unless `token` is given."""
    transport = HTTPXAsyncTransport(
        url=server.graphql_http,
        timeout=30,
        headers={"Authorization": f"Bearer {token or server.token}"},
    )
    async with Client(transport=transport) as session:
        result: dict[str, Any] = await session.execute(
            GraphQLRequest(document, variable_values=variables)
        )
        return result


async def start(server: Server, *, token: str | None = None, **input: Any) -> str:
    """Start an execution; fail loudly unless it was accepted."""
    result = await execute(server, START, {"input": input}, token=token)
    payload = result["startExecution"]
    assert payload["__typename"] == "StartExecutionSuccess", payload
    return str(payload["execution"]["id"])


async def follow(
    server: Server, execution_id: str, after_seq: int = 0, *, token: str | None = None
) -> list[dict[str, Any]]:
    """Every event the subscription delivers until it completes."""
    events: list[dict[str, Any]] = []
    async with Client(transport=ws_transport(server, token)) as session:
        request = GraphQLRequest(FOLLOW, variable_values={"id": execution_id, "after": after_seq})
        async for message in session.subscribe(request):
            batch = message["executionEvents"]
            assert batch["lastSeq"] == batch["events"][-1]["seq"]
            events.extend(batch["events"])
    return events


async def wait_for_status(
    server: Server,
    execution_id: str,
    statuses: set[str],
    timeout: float = 30,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    """Poll until the execution reaches one of `statuses`."""
    query = "query($id: ID!) { execution(id: $id) { id status error lastSeq } }"
    async with asyncio.timeout(timeout):
        while True:
            found = (await execute(server, query, {"id": execution_id}, token=token))["execution"]
            if found["status"] in statuses:
                return dict(found)
            await asyncio.sleep(0.05)


def definition(*steps: str, name: str = "test", extra: str = "") -> str:
    """A YAML definition from step snippets (each a YAML mapping in flow style)."""
    lines = [f"name: {name}", extra, "steps:"] + [f"  - {step}" for step in steps]
    return "\n".join(line for line in lines if line)


def gated_step(key: str, gate: Path, extra: str = "") -> str:
    """A shell step that runs until the file `gate` exists: the test, not a clock, ends it.

    A step that merely sleeps races the test on a loaded machine: its time can run out before the
    pause, stop or retry the test sends while it runs.
    """
    script = f"until [ -e {gate} ]; do sleep 0.02; done"
    return f'{{key: {key}, kind: shell, {extra}with: {{argv: ["sh", "-c", "{script}"]}}}}'


@asynccontextmanager
async def acknowledged(server: Server) -> AsyncIterator[ClientConnection]:
    """A graphql-transport-ws socket whose connection_init (with the token) was acknowledged."""
    async with connect(
        server.graphql_ws, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {server.token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        yield ws


async def subscription_data(
    server: Server, operation_id: str, document: str, variables: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every `next` payload's data of one graphql-transport-ws operation, until `complete`."""
    received: list[dict[str, Any]] = []
    async with acknowledged(server) as ws:
        payload = {"query": document, "variables": variables}
        await ws.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": payload}))
        async for raw in ws:
            message = json.loads(raw)
            assert message["id"] == operation_id, message
            if message["type"] == "complete":
                return received
            assert message["type"] == "next", message
            assert set(message["payload"]) == {"data"}, message
            received.append(message["payload"]["data"])
    raise AssertionError(f"{operation_id}: closed before complete")


STEPS = """
query($id: ID!) {
  execution(id: $id) {
    status error
    steps { key attempt status startedAt finishedAt error output }
  }
}
"""


async def steps_of(server: Server, execution_id: str) -> list[dict[str, Any]]:
    found = (await execute(server, STEPS, {"id": execution_id}))["execution"]
    return list(found["steps"])


def attempts(steps: list[dict[str, Any]], key: str) -> list[tuple[int, str]]:
    return [(step["attempt"], step["status"]) for step in steps if step["key"] == key]


async def wait_for_step(server: Server, execution_id: str, key: str, status: str) -> None:
    async with asyncio.timeout(30):
        while True:
            found = await steps_of(server, execution_id)
            if any(s["key"] == key and s["status"] == status for s in found):
                return
            await asyncio.sleep(0.05)
