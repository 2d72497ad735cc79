"""uvicorn's connections as events/compat/uvicorn.py uses them, on the app `runwire serve` serves.

Slow clients are found and cut through these; when one breaks, nobody is cut (the engine still
never waits on a client for another), so each is checked here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from pathlib import Path

import httpx
import pytest
import websockets
from tests.support.contract import Contract
from tests.support.graphql import definition, gated_step, start, wait_for_status
from tests.support.inprocess import Served
from websockets.http11 import Request

from runwire.events.compat.uvicorn import SocketProtocol, Transport
from runwire.events.slow_clients import CUT_CLOSE_CODE, CUT_REASON, SlowClients

UVICORN = Contract("uvicorn", "uvicorn", place="server/runwire/events/compat")
FOLLOW = "subscription($id: ID!) { executionEvents(executionId: $id) { lastSeq } }"


async def _watched(slow_clients: SlowClients, count: int) -> None:
    async with asyncio.timeout(10):
        while slow_clients.connections != count:
            await asyncio.sleep(0.01)


async def test_subscriptions_and_sse_streams_are_watched_and_a_websocket_can_be_cut(
    runwire: Served, tmp_path: Path
) -> None:
    slow_clients: SlowClients = runwire.app.state.slow_clients
    execution_id = await start(runwire, definition=definition(gated_step("wait", tmp_path / "g")))
    headers = {"Authorization": f"Bearer {runwire.token}"}
    async with websockets.connect(
        runwire.graphql_ws, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": headers}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": FOLLOW, "variables": {"id": execution_id}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        assert json.loads(await ws.recv())["type"] == "next"
        with UVICORN.holds(
            "the ASGI send Litestar keeps is a bound method of an owner with the asyncio transport"
        ):
            await _watched(slow_clients, 1)
            (watched,) = slow_clients.watched()
            assert watched.transport.get_write_buffer_limits()[1] > 0
            assert not watched.behind()
        with UVICORN.holds(
            "the sans-I/O protocol's conn writes a close frame, and a disconnect on its queue"
            " ends the app's reading of the socket"
        ):
            watched.end()
            async with asyncio.timeout(10):
                try:
                    await ws.recv()
                    raise AssertionError("a message after the cut")
                except websockets.ConnectionClosed:
                    pass
            assert (ws.close_code, ws.close_reason) == (CUT_CLOSE_CODE, CUT_REASON)
            await _watched(slow_clients, 0)

    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream(
            "GET", f"{runwire.url}/executions/{execution_id}/events", headers=headers
        ) as response,
    ):
        assert response.status_code == 200
        with UVICORN.holds("an SSE response's ASGI send is owned by the request's cycle"):
            await _watched(slow_clients, 1)
            (watched,) = slow_clients.watched()
            watched.end()
            # Ended mid-stream: the response's chunked body stops without its last chunk.
            async with asyncio.timeout(10):
                with contextlib.suppress(httpx.RemoteProtocolError):
                    async for _ in response.aiter_lines():
                        pass
            await _watched(slow_clients, 0)
    (tmp_path / "g").touch()
    await wait_for_status(runwire, execution_id, {"SUCCEEDED"})  # nothing left for the teardown


def test_uvloop_transports_offer_what_is_used() -> None:
    """`runwire serve` runs on uvloop when it is installed; its transports are not asyncio's."""
    uvloop = pytest.importorskip("uvloop.loop")
    with UVICORN.holds("uvloop's TCP transport has the asyncio transport methods used"):
        methods = [name for name in vars(Transport) if not name.startswith("_")]
        assert "get_write_buffer_size" in methods
        for name in methods:
            assert callable(getattr(uvloop.TCPTransport, name, None)), name


async def test_an_accepted_socket_keeps_no_copy_of_its_handshake(runwire: Served) -> None:
    """SocketProtocol drops what uvicorn and websockets keep of the handshake (bench P4)."""
    headers = {"Authorization": f"Bearer {runwire.token}"}
    async with websockets.connect(
        runwire.graphql_ws, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": headers}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        (protocol,) = [found for found in gc.get_objects() if isinstance(found, SocketProtocol)]
        with UVICORN.holds(
            "the sans-I/O protocol keeps the handshake as `request` and `response`, and"
            " websockets' parser the request, which is no longer read once answered"
        ):
            assert protocol.handshake_complete
            assert "request" not in vars(protocol)
            assert "response" not in vars(protocol)
            kept = [
                found
                for found in gc.get_referents(protocol.conn.parser)
                if isinstance(found, Request)
            ]
            assert kept
            assert all(not request.headers for request in kept), kept
        # The socket still works: an operation is answered.
        query = {"query": "{ viewer { label } }"}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": query}))
        assert json.loads(await ws.recv())["type"] == "next"
