"""A subscriber that disconnects mid-stream leaves nothing behind; shutdown ends runs CANCELLED."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import websockets
from tests.support.graphql import definition, execute, start, wait_for_status
from tests.support.server import Server, running_server

LONG = definition(
    '{key: tick, kind: shell, with: {argv: ["sh", "-c", "while true; do echo tick; sleep 0.05;'
    ' done"]}}'
)


async def _followers(server: Server) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(f"{server.url}/health")).json()["followers"])


async def _until_no_followers(server: Server) -> None:
    async with asyncio.timeout(10):
        while await _followers(server) != 0:
            await asyncio.sleep(0.05)


async def test_websocket_subscriber_that_vanishes_leaves_nothing(server: Server) -> None:
    execution_id = await start(server, definition=LONG)
    sockets = []
    for _ in range(3):
        socket = await websockets.connect(server.graphql_ws, subprotocols=["graphql-transport-ws"])
        await socket.send(json.dumps({"type": "connection_init", "payload": server.headers}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        query = "subscription($id: ID!) { executionEvents(executionId: $id) { lastSeq } }"
        await socket.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": {"id": execution_id}},
                }
            )
        )
        assert json.loads(await socket.recv())["type"] == "next"
        sockets.append(socket)
    assert await _followers(server) == 3
    # Drop the TCP connection without a close handshake, as a crashed client would.
    for socket in sockets:
        socket.transport.abort()
    await _until_no_followers(server)
    await execute(
        server, "mutation($id: ID!) { stopExecution(id: $id) { __typename } }", {"id": execution_id}
    )
    await wait_for_status(server, execution_id, {"CANCELLED"})


async def test_sse_client_that_vanishes_leaves_nothing(server: Server) -> None:
    execution_id = await start(server, definition=LONG)
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream(
            "GET", f"{server.url}/executions/{execution_id}/events", headers=server.headers
        ) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("id:") and int(line[3:]) >= 3:
                break
        assert await _followers(server) == 1
    await _until_no_followers(server)
    await execute(
        server, "mutation($id: ID!) { stopExecution(id: $id) { __typename } }", {"id": execution_id}
    )
    await wait_for_status(server, execution_id, {"CANCELLED"})


async def test_shutdown_ends_running_executions_cancelled(tmp_path: Path) -> None:
    with running_server("sqlite", tmp_path) as first:
        execution_id = await start(first, definition=LONG)
        await wait_for_status(first, execution_id, {"RUNNING"})
    # The same data directory, served again: the execution was not left RUNNING.
    with running_server("sqlite", tmp_path) as second:
        final = await wait_for_status(second, execution_id, {"CANCELLED"}, timeout=5)
        assert final["error"] == "server shutting down"
