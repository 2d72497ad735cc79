"""What Runwire assumes of Litestar's WebSocket (tests/contract/test_litestar.py).

The stepped send is also checked on the live path in tests/contract/test_fanout_path.py.

- `WebSocket.send_data(data)` is a coroutine that, stepped once by hand, runs to its end when the
  ASGI server writes at once (uvicorn does unless the client's buffer is full); otherwise it
  suspends on a future, or yields bare to the loop, and can be driven to its end later, from
  another task. A client gone away raises `WebSocketDisconnect`.
- `WebSocket.connection_state` is "disconnect" once the client's close was received.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeAlias

from litestar import WebSocket

PendingSend: TypeAlias = tuple[Coroutine[Any, Any, None], Any]
"""A send that waits on its client: the suspended coroutine and what it waits on."""


def send_without_waiting(socket: WebSocket[Any, Any, Any], data: str) -> PendingSend | None:
    """Send `data` if it goes out at once (None); else the send, for another task to finish."""
    send = socket.send_data(data)
    try:
        waiting = send.send(None)
    except StopIteration:
        return None
    return send, waiting


async def finish_send(pending: PendingSend) -> None:
    """Drive a send that `send_without_waiting` left waiting on its client to its end."""
    send, waiting = pending
    try:
        while True:
            if waiting is None:
                await asyncio.sleep(0)  # a bare yield: the send only gave way to the loop
            else:
                # Wait for the future the send awaits without awaiting it here: the send's own
                # await of it is suspended inside the coroutine, and resumes below.
                await asyncio.wait((waiting,))
            waiting = send.send(None)
    except StopIteration:
        return
    finally:
        send.close()


def is_disconnected(socket: WebSocket[Any, Any, Any]) -> bool:
    """Whether the client's close has been received."""
    return socket.connection_state == "disconnect"
