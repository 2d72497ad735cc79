"""A subscriber that disconnects mid-stream leaves nothing behind; shutdown hands runs over."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import websockets
from tests.support.graphql import (
    attempts,
    definition,
    execute,
    follow,
    gated_step,
    start,
    steps_of,
    wait_for_status,
    wait_for_step,
)
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
    # The stream's end is logged by nobody: no "aclose(): asynchronous generator is already
    # running" traceback for a client that went away.
    log = server.log.read_text()
    assert "Traceback" not in log
    assert "RuntimeError" not in log
    await execute(
        server, "mutation($id: ID!) { stopExecution(id: $id) { __typename } }", {"id": execution_id}
    )
    await wait_for_status(server, execution_id, {"CANCELLED"})


async def test_shutdown_hands_a_running_execution_to_the_next_runner(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    text = definition(
        '{key: first, kind: shell, with: {argv: ["echo", "done once"]}}',
        gated_step("wait", gate, "on_runner_lost: retry, "),
    )
    with running_server("sqlite", tmp_path) as first:
        execution_id = await start(first, definition=text)
        await wait_for_step(first, execution_id, "wait", "RUNNING")
    # Stopped (SIGTERM) while `wait` ran: interrupted after the drain and queued again. The same
    # data directory, served again, resumes it at `wait`; `first` is not run twice.
    with running_server("sqlite", tmp_path) as second:
        gate.touch()
        final = await wait_for_status(second, execution_id, {"SUCCEEDED", "FAILED"}, timeout=30)
        assert final["status"] == "SUCCEEDED"
        steps = await steps_of(second, execution_id)
        assert attempts(steps, "first") == [(1, "SUCCEEDED")]
        assert attempts(steps, "wait") == [(1, "CANCELLED"), (2, "SUCCEEDED")]
        statuses = [
            (e["status"], e["reason"])
            for e in await follow(second, execution_id)
            if e.get("status")
        ]
        assert ("QUEUED", "handed over: server shutting down") in statuses


async def test_shutdown_fails_an_execution_whose_step_must_not_run_twice(tmp_path: Path) -> None:
    with running_server("sqlite", tmp_path) as first:
        execution_id = await start(first, definition=LONG)  # a shell step: may not run twice
        await wait_for_status(first, execution_id, {"RUNNING"})
    with running_server("sqlite", tmp_path) as second:
        final = await wait_for_status(second, execution_id, {"FAILED"}, timeout=5)
        assert final["error"] == (
            "step tick interrupted: server shutting down (on_runner_lost: fail)"
        )
