"""Slow clients are cut, not waited for.

A subscriber's messages go out through its connection's asyncio transport: the kernel's socket
buffer first, then the transport's own buffer, and past the transport's high-water mark (64 KiB)
its protocol's sends wait for the client to read. A client that stopped reading (or reads slower
than its events come) leaves its sends waiting for ever, holds a follower of the hub and its
buffers, and, in a send group, the other members' batches (graphql/fanout/send_groups.py asks
`behind()`).

So each subscription's connection is *watched*: it is *behind* while its transport holds more
than the high-water mark, and a connection behind for `stall_seconds` is *cut*: a WebSocket is
closed with `CUT_CLOSE_CODE` (the close frame queued after what the client has not read, the
subscriptions ended at once, the TCP connection dropped `CUT_GRACE_SECONDS` later if the client
has not read up to the close), an SSE stream is ended the same way. Nothing is lost: the
client resumes with `afterSeq` (SSE: Last-Event-ID) from the last seq it received.

A connection behind, or cut, is not a live follower for `/health`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from runwire.events.compat.uvicorn import (
    Transport,
    close_websocket_now,
    drop_after,
    high_water,
    transport_of,
)

logger = logging.getLogger(__name__)

CUT_CLOSE_CODE = 4100
"""The WebSocket close code of a cut subscriber: too slow, resume with afterSeq.

Outside graphql-transport-ws's own codes (4400-4599, each 4000 + an HTTP status), so a future
protocol code cannot mean something else; a client that sees it reconnects and resumes.
"""
CUT_REASON = "too slow to read its events: resume with afterSeq"
CUT_GRACE_SECONDS = 2.0
"""After a cut, how long the client has to read up to the close before the TCP connection drops."""


_SEND = "runwire.server_send"


def keep_server_send(scope: Any, send: Any) -> None:
    """Keep in `scope` the `send` the ASGI server gave: Litestar hands on a wrapper of it."""
    scope[_SEND] = send


def server_send(scope: Any) -> Any:
    """The ASGI server's own `send` for the connection of `scope`; None if not kept."""
    return scope.get(_SEND)


class Watched:
    """One connection some subscriptions are sent on: behind, or cut, or neither."""

    __slots__ = ("_cut", "_high", "behind_since", "cut", "subscriptions", "transport")

    def __init__(self, transport: Transport, cut: Callable[[], None]) -> None:
        self.transport = transport
        self._high = high_water(transport)
        self._cut = cut
        self.subscriptions = 0
        self.behind_since: float | None = None
        self.cut = False

    def behind(self) -> bool:
        """Whether its client is not reading what it is sent (or it was cut for that)."""
        return self.cut or self.transport.get_write_buffer_size() > self._high

    def end(self) -> None:
        self.cut = True
        self._cut()


class SlowClients:
    """This process's watched connections, checked a few times per `stall_seconds`."""

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self.check_seconds = min(0.25, stall_seconds / 4)
        self._watched: dict[Transport, Watched] = {}
        self.cut_count = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, stall_seconds: float) -> AsyncIterator[SlowClients]:
        """Watch connections for the block."""
        slow_clients = cls(stall_seconds)
        checking = asyncio.create_task(slow_clients._check_forever(), name="runwire-slow-clients")
        try:
            yield slow_clients
        finally:
            checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checking

    @property
    def connections(self) -> int:
        """Connections watched now."""
        return len(self._watched)

    def watched(self) -> list[Watched]:
        return list(self._watched.values())

    @property
    def stalled_subscriptions(self) -> int:
        """Subscriptions on connections that are behind or cut: not live followers."""
        return sum(w.subscriptions for w in self._watched.values() if w.behind())

    @contextlib.contextmanager
    def websocket(self, scope: Any) -> Iterator[Watched | None]:
        """Watch the WebSocket of an ASGI `scope` while a subscription uses it."""
        send = server_send(scope)

        def cut() -> None:
            close_websocket_now(send, CUT_CLOSE_CODE, CUT_REASON, CUT_GRACE_SECONDS)

        with self._watching(send, cut) as watched:
            yield watched

    @contextlib.contextmanager
    def stream(self, scope: Any) -> Iterator[Watched | None]:
        """Watch the HTTP response (an SSE stream) of an ASGI `scope` while it lasts."""
        send = server_send(scope)

        def cut() -> None:
            transport = transport_of(send)
            if transport is not None and not transport.is_closing():
                drop_after(transport, CUT_GRACE_SECONDS)

        with self._watching(send, cut) as watched:
            yield watched

    @contextlib.contextmanager
    def _watching(self, send: Any, cut: Callable[[], None]) -> Iterator[Watched | None]:
        transport = transport_of(send)
        if transport is None:
            yield None  # not served by uvicorn: nothing to watch
            return
        watched = self._watched.get(transport)
        if watched is None:
            watched = self._watched[transport] = Watched(transport, cut)
        watched.subscriptions += 1
        try:
            yield watched
        finally:
            watched.subscriptions -= 1
            if not watched.subscriptions and self._watched.get(transport) is watched:
                del self._watched[transport]

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            self.check()

    def check(self) -> None:
        """Note which connections are behind since when; cut those behind for too long."""
        now = asyncio.get_running_loop().time()
        for watched in list(self._watched.values()):
            if watched.cut:
                continue
            if not watched.behind():
                watched.behind_since = None
                continue
            if watched.behind_since is None:
                watched.behind_since = now
            elif now - watched.behind_since >= self.stall_seconds:
                self.cut_count += 1
                logger.warning(
                    "cut a subscriber connection whose client read nothing for %.1f s"
                    " (%d subscriptions; they resume with afterSeq)",
                    now - watched.behind_since,
                    watched.subscriptions,
                )
                watched.end()
