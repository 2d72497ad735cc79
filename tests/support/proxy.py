"""A TCP proxy in front of a server that a test can cut, to drop clients' connections mid-run.

It also keeps what the server sent on each connection, so a test can see where a resumed
subscription started (server-to-client WebSocket frames are not masked, and the server does not
compress them unless configured to).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

_SEQ = re.compile(rb'"seq":\s*(\d+)')


@dataclass(eq=False)
class Connection:
    """One client connection and what the server sent over it."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    downstream_bytes: bytearray = field(default_factory=bytearray)
    # Test-provided context of the moment the connection was accepted (see `Proxy.on_accept`).
    note: object = None

    @property
    def seqs(self) -> list[int]:
        """The event seqs the server sent on this connection, in order."""
        return [int(found) for found in _SEQ.findall(bytes(self.downstream_bytes))]

    def abort(self) -> None:
        """Drop both sides at once, as a network failure would (no close handshake)."""
        self.client.transport.abort()
        self.upstream.transport.abort()


@dataclass(eq=False)
class Proxy:
    """Forwards 127.0.0.1:<port> to the upstream host and port."""

    upstream_host: str
    upstream_port: int
    connections: list[Connection] = field(default_factory=list)
    # Called as each connection is accepted; its result is kept as the connection's note.
    on_accept: Callable[[], object] | None = None
    _server: asyncio.Server | None = None
    _pumps: set[asyncio.Task[None]] = field(default_factory=set)
    _handlers: set[asyncio.Task[object]] = field(default_factory=set)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> int:
        """Abort every open connection; return how many there were."""
        alive = [c for c in self.connections if not c.client.transport.is_closing()]
        for connection in alive:
            connection.abort()
        return len(alive)

    async def reopen(self) -> None:
        """Listen again on the same port, after `refuse`."""
        if self._server is None:
            await self.start()

    async def refuse(self) -> None:
        """Stop listening (new connections are refused) and cut the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cut()

    async def close(self) -> None:
        await self.refuse()
        for task in list(self._pumps):
            task.cancel()
        # The handlers end once their pumps have; cancelling them instead would make asyncio's
        # stream machinery log the cancellation as an error.
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if (this := asyncio.current_task()) is not None:
            self._handlers.add(this)
            this.add_done_callback(self._handlers.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.transport.abort()
            return
        connection = Connection(client=writer, upstream=up_writer)
        if self.on_accept is not None:
            connection.note = self.on_accept()
        self.connections.append(connection)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, None)),
            asyncio.create_task(self._pump(up_reader, writer, connection.downstream_bytes)),
        ]
        for task in pumps:
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)
        await asyncio.gather(*pumps, return_exceptions=True)
        connection.abort()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray | None
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                if writer.transport.is_closing():
                    return
                if record is not None:
                    record.extend(chunk)
                writer.write(chunk)
                await writer.drain()
        # One side ended: end the other as well.
        writer.transport.abort()


@contextlib.asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[Proxy]:
    """A started proxy in front of the server at `url` (http://host:port)."""
    host, _, port = url.removeprefix("http://").partition(":")
    proxy = Proxy(host, int(port))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
