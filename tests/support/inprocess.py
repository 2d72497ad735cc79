"""A real app served by uvicorn inside the test's own event loop, so tests can see its state."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from litestar import Litestar
from tests.support.server import free_port


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
        ws="websockets-sansio",
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
