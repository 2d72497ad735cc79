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

- uvicorn's sans-I/O protocol builds that `ServerProtocol` in its `__init__`, with
  permessage-deflate settings of its own when `ws_per_message_deflate` is on; `SocketProtocol`
  (what `runwire serve` runs) builds it again with Runwire's (`small_deflate`), and drops the
  handshake's `request` (its headers emptied) and `response` once it has sent the answer:
  uvicorn reads them only until then, websockets' parser never again.

The rest is the public transport API of asyncio, which uvloop's transports (what `runwire serve`
runs on when uvloop is installed) offer too without subclassing asyncio's: `write`,
`get_write_buffer_size()` and `get_write_buffer_limits()` (a transport pauses its protocol's
writes above the high limit), `is_closing()`, `close()` (after the buffer is written), `abort()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final, Protocol, runtime_checkable

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request
from websockets.server import ServerProtocol

# permessage-deflate as Runwire accepts it. websockets keeps a compressor and a decompressor for
# a connection's whole life; at uvicorn's sizes (12 window bits, memLevel 5) that is ~38 KB +
# ~11 KB of zlib state per socket, most of what an idle subscription cost with compression on
# (bench P4). Instead:
# - the client compresses each message on its own (`client_no_context_takeover`, which a server
#   may require whatever the client offered, RFC 7692 7.1.1.2), so websockets makes the
#   decompressor per message and drops it after the message's last frame. A client sends a few
#   small messages per subscription; what it receives is what compression is for.
# - the server keeps its compressor, so a stream of similar messages still shares a dictionary,
#   but with a 512-byte window and memLevel 2 (~10 KB): Runwire's messages are small JSON
#   documents whose repeats lie close together; a larger window gained nothing on them (20 event
#   messages: 302 bytes either way; a 13.7 KB backlog page: 995 bytes here, 1,092 at 12/5).
SERVER_WINDOW_BITS: Final = 9  # zlib's smallest raw-deflate window (it refuses 8)
SERVER_MEM_LEVEL: Final = 2
CLIENT_WINDOW_BITS: Final = 12  # for the decompressor, while one client message is read


def small_deflate() -> ServerPerMessageDeflateFactory:
    """The permessage-deflate Runwire's sockets accept (see above)."""
    return ServerPerMessageDeflateFactory(
        client_no_context_takeover=True,
        server_max_window_bits=SERVER_WINDOW_BITS,
        client_max_window_bits=CLIENT_WINDOW_BITS,
        compress_settings={"memLevel": SERVER_MEM_LEVEL},
    )


class SocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, with Runwire's permessage-deflate settings."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if config.ws_per_message_deflate:
            self.conn = ServerProtocol(
                extensions=[small_deflate()],
                max_size=config.ws_max_size,
                logger=logging.getLogger("uvicorn.error"),
            )

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # uvicorn reads the handshake's request and response only until it has answered
            # it; kept, they hold two more copies of the headers for the socket's life (~5 KB).
            # The request's headers are emptied as well: websockets' parser keeps the request
            # in its generator's frame for the connection's life. (The app has its own copy,
            # the ASGI scope's.)
            request = self.__dict__.pop("request", None)
            if isinstance(request, Request):
                request.headers.clear()
            self.__dict__.pop("response", None)


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
