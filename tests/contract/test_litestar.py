"""Litestar's WebSocket as compat/litestar.py uses it, served by uvicorn as `runwire serve` does."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from litestar import Litestar, WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from tests.support.contract import Contract
from tests.support.inprocess import Served, serving
from websockets.asyncio.client import connect

from runwire.graphql.fanout.compat.litestar import (
    finish_send,
    is_disconnected,
    send_without_waiting,
)

LITESTAR = Contract("litestar", "litestar")
CHUNK = "x" * 256 * 1024
MAX_CHUNKS = 200  # 50 MiB: far more than the kernel buffers between the two ends

Probe = Callable[[WebSocket[Any, Any, Any]], Coroutine[Any, Any, object]]


class Probes:
    """A server-side check per path, its outcome handed back to the test."""

    def __init__(self) -> None:
        self.outcomes: dict[str, asyncio.Future[object]] = {}
        self.handlers: list[Any] = []

    def add(self, path: str, probe: Probe) -> None:
        outcome = self.outcomes[path] = asyncio.get_running_loop().create_future()

        async def handler(socket: WebSocket[Any, Any, Any]) -> None:
            await socket.accept()
            try:
                outcome.set_result(await probe(socket))
            except Exception as error:
                outcome.set_exception(error)
            # Open until the client leaves: a send the test finishes needs the socket.
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    await socket.receive_text()

        self.handlers.append(websocket(path)(handler))

    async def outcome(self, path: str) -> object:
        async with asyncio.timeout(30):
            return await self.outcomes[path]


@pytest.fixture
async def probes() -> AsyncIterator[tuple[Probes, Served]]:
    found = Probes()
    found.add("/at-once", at_once)
    found.add("/full", until_full)
    found.add("/closed", closed_by_client)
    async with serving(Litestar(route_handlers=found.handlers)) as served:
        yield found, served


async def at_once(socket: WebSocket[Any, Any, Any]) -> object:
    pending = send_without_waiting(socket, "hello")
    await socket.receive_text()  # the client's answer: it read the message
    return pending


async def until_full(socket: WebSocket[Any, Any, Any]) -> object:
    # Nothing yields to the loop here, so the client reads nothing: sends go out at once until
    # the buffers between the two ends are full.
    for sent in range(MAX_CHUNKS):
        pending = send_without_waiting(socket, CHUNK)
        if pending is not None:
            return sent, pending
    return MAX_CHUNKS, None


async def closed_by_client(socket: WebSocket[Any, Any, Any]) -> object:
    try:
        while True:
            await socket.receive_text()
    except WebSocketDisconnect:
        pass
    seen = is_disconnected(socket)
    try:
        send_without_waiting(socket, "too late")
    except WebSocketDisconnect:
        return seen, "disconnect"
    return seen, "sent"


async def small_window(served: Served) -> socket.socket:
    """A client socket that takes little before the server has to wait: no receive autotuning."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setblocking(False)
    host, port = served.url.removeprefix("http://").split(":")
    await asyncio.get_running_loop().sock_connect(client, (host, int(port)))
    return client


def url(served: Served, path: str) -> str:
    return served.url.replace("http://", "ws://") + path


async def test_a_send_to_a_client_that_keeps_up_completes_at_once(
    probes: tuple[Probes, Served],
) -> None:
    found, served = probes
    async with connect(url(served, "/at-once")) as client:
        assert await client.recv() == "hello"
        await client.send("read")
        outcome = await found.outcome("/at-once")
    with LITESTAR.holds(
        "WebSocket.send_data, stepped once by hand, runs to its end for a client that keeps up"
    ):
        assert outcome is None, outcome


async def test_a_send_to_a_full_client_waits_and_is_finished_later(
    probes: tuple[Probes, Served],
) -> None:
    found, served = probes
    async with connect(url(served, "/full"), sock=await small_window(served), max_size=None) as ws:
        sent, pending = await found.outcome("/full")  # type: ignore[misc]
        with LITESTAR.holds(
            "WebSocket.send_data suspends, stepped by hand, when the client's buffer is full"
        ):
            assert pending is not None, f"{sent} sends of {len(CHUNK)} bytes all went at once"
        with LITESTAR.holds(
            "a send left suspended can be driven to its end from another task (finish_send)"
        ):
            finishing = asyncio.create_task(finish_send(pending))
            async with asyncio.timeout(30):
                for _ in range(sent + 1):  # the sends that went at once, then the finished one
                    assert await ws.recv() == CHUNK
                await finishing


async def test_a_client_gone_away_is_seen(probes: tuple[Probes, Served]) -> None:
    found, served = probes
    async with connect(url(served, "/closed")) as client:
        await client.send("hi")
    outcome = await found.outcome("/closed")
    with LITESTAR.holds(
        "connection_state is 'disconnect' once the client's close is received, and a send then"
        " raises WebSocketDisconnect"
    ):
        assert outcome == (True, "disconnect")
