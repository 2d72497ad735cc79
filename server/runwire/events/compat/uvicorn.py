"""What Runwire assumes of uvicorn's connections (tests/contract/test_uvicorn.py).

ASGI gives an application no way to see whether a client reads what it is sent, nor to close a
socket whose client stopped reading (a close is sent like data, after what is queued). Runwire
needs both to cut slow clients (events/slow_clients.py), so it reaches past ASGI here:

- The ASGI `send` uvicorn hands the app, through Litestar (which keeps it as a connection's
  `send`), is a bound method of the object that owns the connection's asyncio transport, as
  `transport`: the WebSocket protocol (sans-I/O), or the HTTP request cycle (httptools, h11).
- uvicorn's sans-I/O WebSocket protocol keeps its websockets `ServerProtocol` as `conn`, and
  the queue `receive` reads as `queue`; it puts `websocket.disconnect` there itself when the app
  sends a close, which ends the app's reading loop.

The rest is the public transport API of asyncio, which uvloop's transports (what `runwire serve`
runs on when uvloop is installed) offer too without subclassing asyncio's: `write`,
`get_write_buffer_size()` and `get_write_buffer_limits()` (a transport pauses its protocol's
writes above the high limit), `is_closing()`, `close()` (after the buffer is written), `abort()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol, runtime_checkable

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


@runtime_checkable
class Transport(Protocol):
    """What is used of a connection's transport: asyncio's or uvloop's."""

    def write(self, data: bytes) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def get_write_buffer_limits(self) -> tuple[int, int]: ...
    def is_closing(self) -> bool: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


def transport_of(send: Any) -> Transport | None:
    """The transport an ASGI `send` writes to; None if it is not uvicorn's (then unknown)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    return transport if isinstance(transport, Transport) else None


def high_water(transport: Transport) -> int:
    """The bytes buffered above which the transport pauses writes: its client is not reading."""
    return transport.get_write_buffer_limits()[1]


def close_websocket_now(send: Any, code: int, reason: str, grace: float) -> None:
    """Close the socket `send` writes to without waiting for its client, with `code`.

    The close frame is queued after what the client has not read yet; the app is told the
    socket is gone at once; the TCP connection is dropped after `grace` seconds if the client
    has not read up to the close by then.
    """
    protocol = getattr(send, "__self__", None)
    transport = transport_of(send)
    if transport is None or transport.is_closing():
        return
    if isinstance(protocol, WebSocketsSansIOProtocol) and not protocol.close_sent:
        with contextlib.suppress(Exception):  # the connection may be closing already
            protocol.conn.send_close(code, reason)
            transport.write(b"".join(protocol.conn.data_to_send()))
            protocol.queue.put_nowait({"type": "websocket.disconnect", "code": code})
    drop_after(transport, grace)


def drop_after(transport: Transport, grace: float) -> None:
    """Close the transport once written out, and drop it after `grace` seconds regardless."""
    transport.close()
    asyncio.get_running_loop().call_later(grace, transport.abort)
