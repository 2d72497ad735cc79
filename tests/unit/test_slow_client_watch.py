"""A watched connection is behind while its transport holds more than its high-water mark.

Over a real socket transport whose peer reads nothing; the connection's owner is a plain object
in place of uvicorn's protocol (tests/contract/test_uvicorn.py checks uvicorn's).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from runwire.events.slow_clients import SlowClients, keep_server_send


class Connection:
    """What the watch reads of an ASGI server's connection: its `send`, owned with a transport."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    async def send(self, message: dict[str, Any]) -> None:
        raise AssertionError("nothing is sent through the watch")


@asynccontextmanager
async def scope_of_unread_connection() -> AsyncIterator[tuple[dict[str, Any], asyncio.Transport]]:
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol, sock=ours)
    scope: dict[str, Any] = {}
    keep_server_send(scope, Connection(transport).send)
    try:
        yield scope, transport
    finally:
        transport.abort()
        theirs.close()


async def test_a_connection_behind_is_no_live_follower_and_is_cut_after_the_bound() -> None:
    slow_clients = SlowClients(stall_seconds=0.2)
    async with scope_of_unread_connection() as (scope, transport):
        with slow_clients.websocket(scope) as watched, slow_clients.websocket(scope):
            assert watched is not None
            slow_clients.check()
            assert slow_clients.stalled_subscriptions == 0  # reading (nothing sent yet)
            transport.write(b"x" * (16 << 20))  # more than the kernel's buffers take
            assert watched.behind()
            assert slow_clients.stalled_subscriptions == 2  # both subscriptions on it
            slow_clients.check()
            assert not watched.cut  # behind, not for long enough yet
            await asyncio.sleep(0.25)
            slow_clients.check()
            assert watched.cut
            assert transport.is_closing()
            assert slow_clients.stalled_subscriptions == 2
        assert slow_clients.connections == 0
