"""A real app served by uvicorn inside the test's own event loop, so tests can see its state."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar
from tests.support.server import free_port

from runwire.events.compat.uvicorn import SocketProtocol


@dataclass(frozen=True)
class Served:
    """Where an in-process app answers; enough of `Server` for the GraphQL helpers."""

    app: Litestar
    url: str
    token: str = ""

    @property
    def services(self) -> Any:
        return self.app.state.services

    @property
    def graphql_http(self) -> str:
        return f"{self.url}/graphql"

    @property
    def graphql_ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"


@contextlib.asynccontextmanager
async def serving(app: Litestar, token_file: Path | None = None) -> AsyncIterator[Served]:
    """Serve `app` as `runwire serve` does (uvicorn, sans-I/O sockets) until the block ends."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws=SocketProtocol,
        ws_per_message_deflate=False,  # the default setting: every message written as it is
    )
    server = uvicorn.Server(config)
    # The app's lifespan tunes the collector for a server; the test process gets its own back.
    threshold = gc.get_threshold()
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the server stopped while starting")
                await asyncio.sleep(0.02)
        token = (
            "" if token_file is None else (await asyncio.to_thread(token_file.read_text)).strip()
        )
        yield Served(app, f"http://127.0.0.1:{port}", token)
    finally:
        server.should_exit = True
        await task
        gc.unfreeze()
        gc.set_threshold(*threshold)


@contextlib.contextmanager
def serving_in_thread(app: Litestar, token_file: Path | None = None) -> Iterator[Served]:
    """`serving(app)` on an event loop of its own thread, for synchronous tests (a subprocess
    such as `rw` waited for) and for async tests whose loop must not be the server's."""
    started: queue.Queue[tuple[Served, Callable[[], None]] | BaseException] = queue.Queue()

    async def serve() -> None:
        loop, stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            async with serving(app, token_file) as served:
                started.put((served, lambda: loop.call_soon_threadsafe(stop.set)))
                await stop.wait()
        except BaseException as error:
            started.put(error)
            raise

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="in-process server")
    thread.start()
    found = started.get(timeout=60)
    if isinstance(found, BaseException):
        thread.join(timeout=30)
        raise RuntimeError("the in-process server did not start") from found
    served, stop = found
    try:
        yield served
    finally:
        stop()
        thread.join(timeout=30)
