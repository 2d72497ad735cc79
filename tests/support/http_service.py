"""Test doubles of external HTTP services, served for real on a local port."""

from __future__ import annotations

import abc
import asyncio
import json
from typing import Any, Self


class LocalHttpService(abc.ABC):
    """An HTTP service served for real on a free port of 127.0.0.1, in the running event loop.

    Use it as `async with`: leaving closes the server and cancels the connections still being
    answered (say, one waiting for a client that never hangs up). Subclasses only say, in
    `respond`, how one connection is answered.
    """

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Tracked so that __aexit__ can cancel it: wait_closed does not end open connections.
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            await self.respond(reader, writer)
        finally:
            writer.close()
            await writer.wait_closed()
            self.handlers.discard(task)

    @abc.abstractmethod
    async def respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read a request from `reader` and answer it on `writer`; `handle` then closes it."""


class FakeHttpService(LocalHttpService):
    """A test double of an external HTTP service: one HTTP/1.1 request per connection, by path."""

    async def respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        request_line, *header_lines = head.split("\r\n")[:-2]
        method, path, _ = request_line.split(" ")
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        if path == "/hang":
            await reader.read()  # until the client gives up and disconnects
            return
        if path.startswith("/slow/"):  # answers after this many milliseconds
            await asyncio.sleep(int(path.removeprefix("/slow/")) / 1000)
        status, content_type, content = self.route(method, path, headers, body)
        head = (
            f"HTTP/1.1 {status} Whatever\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(content)}\r\nx-service: fake\r\nconnection: close\r\n\r\n"
        )
        writer.write(head.encode() + content)
        await writer.drain()

    def route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        if path.startswith("/status/"):
            return int(path.removeprefix("/status/")), "text/plain", b"status page"
        if path == "/json":
            return 200, "application/json; charset=utf-8", b'{"ok": true, "items": [1, 2]}'
        if path == "/big":
            return 200, "text/plain; charset=utf-8", b"y" * 70_000
        if path == "/text-json":  # JSON that does not say so
            return 200, "text/plain", b'{"id": 7}'
        echo = {"method": method, "headers": headers, "body": body.decode()}
        return 200, "application/vnd.echo+json", json.dumps(echo).encode()
