"""The socket transport follows its settings: compression, message size, and access logging."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from tests.support.server import Server, running_server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.typing import Subprotocol

TRANSPORT_WS = Subprotocol("graphql-transport-ws")
# Operators who want compression and per-request log lines, with a small request limit.
CHATTY = {
    "RUNWIRE_WS_DEFLATE": "true",
    "RUNWIRE_ACCESS_LOG": "true",
    "RUNWIRE_MAX_BODY_BYTES": "10000",
}
SOCKET_LINE = '"WebSocket /graphql" [accepted]'
ACCESS_LINE = '"POST /graphql HTTP/1.1" 200'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The defaults: no compression, no access log, 1 MB requests."""
    with running_server("sqlite", tmp_path_factory.mktemp("transport-default")) as found:
        yield found


@pytest.fixture(scope="module")
def chatty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("sqlite", tmp_path_factory.mktemp("transport-chatty"), CHATTY) as found:
        yield found


async def _acknowledged(server: Server) -> ClientConnection:
    """A socket that offers permessage-deflate (as browsers do), past connection_ack."""
    socket = await connect(server.graphql_ws, subprotocols=[TRANSPORT_WS], compression="deflate")
    await socket.send(json.dumps({"type": "connection_init", "payload": server.headers}))
    assert json.loads(await socket.recv())["type"] == "connection_ack"
    return socket


async def _viewer_over_http(server: Server) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            server.graphql_http, json={"query": "{ viewer { label } }"}, headers=server.headers
        )
    assert response.status_code == 200, response.text


async def _log_settled(server: Server) -> str:
    """The server's log a while after the requests just made: for lines that must be absent."""
    await asyncio.sleep(0.3)
    return server.log.read_text()


async def _log_showing(server: Server, *lines: str) -> str:
    """The server's log once it has every one of `lines` (polled: a loaded machine is slow)."""
    async with asyncio.timeout(10):
        while not all(line in (log := server.log.read_text()) for line in lines):
            await asyncio.sleep(0.05)
    return log


async def test_compression_is_refused_by_default(server: Server) -> None:
    socket = await _acknowledged(server)
    try:
        assert socket.protocol.extensions == []
        assert socket.response is not None
        assert "Sec-WebSocket-Extensions" not in socket.response.headers
    finally:
        await socket.close()


async def test_compression_is_negotiated_when_enabled(chatty: Server) -> None:
    socket = await _acknowledged(chatty)
    try:
        assert [type(e) for e in socket.protocol.extensions] == [PerMessageDeflate]
        (deflate,) = socket.protocol.extensions
        assert isinstance(deflate, PerMessageDeflate)
        # The server keeps little zlib state per socket (events/compat/uvicorn.py): the client
        # compresses each message on its own, the server with a small window.
        assert deflate.local_no_context_takeover
        assert deflate.remote_max_window_bits == 9
        # Requests and answers go through both sides' contexts, one message after another.
        for number in range(3):
            query = {"query": "{ viewer { label } }"}
            await socket.send(
                json.dumps({"id": str(number), "type": "subscribe", "payload": query})
            )
            answer = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert answer["type"] == "next", answer
            assert answer["payload"]["data"]["viewer"]["label"], answer
            assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "complete"
    finally:
        await socket.close()


async def test_no_line_per_request_or_socket_by_default(server: Server) -> None:
    socket = await _acknowledged(server)
    await socket.close()
    await _viewer_over_http(server)
    log = await _log_settled(server)
    assert SOCKET_LINE not in log
    assert ACCESS_LINE not in log
    # Only the per-request lines are gone: uvicorn's own start-up lines still show.
    assert "Application startup complete" in log


async def test_a_line_per_request_and_socket_when_enabled(chatty: Server) -> None:
    socket = await _acknowledged(chatty)
    await socket.close()
    await _viewer_over_http(chatty)
    await _log_showing(chatty, SOCKET_LINE, ACCESS_LINE)


async def test_a_socket_message_over_the_request_limit_closes_the_socket(chatty: Server) -> None:
    socket = await _acknowledged(chatty)
    padding = " " * 20_000
    await socket.send(
        json.dumps({"id": "1", "type": "subscribe", "payload": {"query": padding + "{ a }"}})
    )
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009  # message too big
    # A request under the limit on a new socket is still served.
    await (await _acknowledged(chatty)).close()
