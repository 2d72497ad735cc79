"""The cross-process bus: small notices that events were committed, one subscription per process.

Built on broadcaster (`Broadcast(backend=...)` + `Broadcast.subscribe`) with the backends in
`bus_backends`. Broadcaster's subscriber queue is unbounded; that is safe here because each
process makes exactly one subscription, drained by one fast consumer (the hub), which never
awaits slow followers (their buffers are bounded and they fall back to the database).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, final

import msgspec
from broadcaster import Broadcast, Event

# What Broadcast.subscribe() yields and raises; broadcaster does not re-export these names.
from broadcaster._base import Subscriber, Unsubscribed

from runwire.domain.errors import RunwireError
from runwire.events.bus_backends import ResyncEvent, backend_for

logger = logging.getLogger(__name__)

DEFAULT_CHANNEL: Final = "runwire.events"
MAX_MESSAGE_BYTES: Final = 7_500
"""Every message is strictly smaller than this (Postgres NOTIFY payloads must be under 8000)."""


class BusClosed(RunwireError):
    """The bus is closed."""


class BusDisconnected(RunwireError):
    """The bus listener stopped; notices can no longer be received."""


@dataclass(frozen=True, slots=True)
class Notice:
    """Events first_seq..last_seq of one execution were committed to the database.

    `status_changed` says the range holds an EXECUTION_STATUS event, so a process can refresh its
    live list of executions without reading the events of every notice.
    """

    execution_id: str
    first_seq: int
    last_seq: int
    status_changed: bool = False
    # A control request (stop, pause, …) for the execution was stored: its runner, wherever it
    # is, should apply it now rather than at its next poll. Such a notice carries no new events.
    control: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.first_seq <= self.last_seq:
            raise ValueError(f"bad seq range {self.first_seq}..{self.last_seq}")


@final
class Resync:
    """The bus may have lost notices (a reconnect): every follower must re-read the database."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RESYNC"


RESYNC: Final = Resync()


class _WireNotice(msgspec.Struct, array_like=True):
    """A notice as sent: [execution_id, first_seq, last_seq] or [..., status_changed]."""

    execution_id: str
    first_seq: int
    last_seq: int
    # Trailing and optional: unflagged notices keep the three-element form and size, and a
    # decoder ignores elements after the ones it knows. (Processes from before the flag reject
    # flagged messages: upgrade every process of a deployment together.)
    status_changed: bool = False
    control: bool = False


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[_WireNotice]).decode


def encode_notices(notices: Sequence[Notice]) -> list[str]:
    """Wire messages under the limit: JSON lists of [execution_id, first_seq, last_seq(, true)]."""
    parts = [
        _encode(
            (n.execution_id, n.first_seq, n.last_seq, n.status_changed, True)
            if n.control
            else (n.execution_id, n.first_seq, n.last_seq, True)
            if n.status_changed
            else (n.execution_id, n.first_seq, n.last_seq)
        )
        for n in notices
    ]
    messages: list[str] = []
    batch: list[bytes] = []
    size = 1  # "[" now; each part then adds its length plus one "," or the closing "]"
    for part in parts:
        if size + len(part) + 1 >= MAX_MESSAGE_BYTES and batch:
            messages.append((b"[%b]" % b",".join(batch)).decode())
            batch, size = [], 1
        if size + len(part) + 1 >= MAX_MESSAGE_BYTES:
            raise ValueError(f"a notice of {len(part)} bytes cannot fit in one bus message")
        batch.append(part)
        size += len(part) + 1
    if batch:
        messages.append((b"[%b]" % b",".join(batch)).decode())
    return messages


def decode_notices(message: str) -> list[Notice]:
    """The notices in one wire message; ValueError if it is malformed."""
    try:
        return [
            Notice(
                wire.execution_id, wire.first_seq, wire.last_seq, wire.status_changed, wire.control
            )
            for wire in _decode(message)
        ]
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ValueError(str(exc)) from None


class Bus:
    """This process's one subscription to the bus, and its way to publish."""

    def __init__(
        self,
        broadcast: Broadcast,
        subscriber: Subscriber,
        listener: asyncio.Task[None],
        channel: str,
    ) -> None:
        self._broadcast = broadcast
        self._subscriber = subscriber
        self._listener = listener
        self._channel = channel
        self._closed = False

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str = "memory://", channel: str = DEFAULT_CHANNEL
    ) -> AsyncIterator[Bus]:
        """Subscribe this process; on entry the subscription is live (later publishes arrive)."""
        backend = backend_for(url)
        broadcast = Broadcast(backend=backend)
        await broadcast.connect()
        # Broadcaster keeps its listener task private and, if it dies, leaves subscribers waiting
        # forever; the bus watches it so receive() fails loudly instead.
        listener: asyncio.Task[None] = broadcast._listener_task
        listener.add_done_callback(_report_stopped)
        try:
            # Subscribe on the backend first so a failure surfaces as itself: broadcaster's
            # subscribe() would mask it with a KeyError from its cleanup. Its own call is a no-op.
            await backend.subscribe(channel)
            async with broadcast.subscribe(channel) as subscriber:
                bus = cls(broadcast, subscriber, listener, channel)
                try:
                    yield bus
                finally:
                    bus._closed = True
        finally:
            # Not Broadcast.disconnect(): it re-raises a dead listener's error and then skips
            # closing the backend, leaking its connections.
            listener.cancel()
            try:
                await asyncio.wait([listener])
            finally:
                await backend.disconnect()

    async def publish(self, notices: Sequence[Notice]) -> None:
        """Announce committed events to every process; a long list travels as several messages."""
        if self._closed:
            raise BusClosed("cannot publish: the bus is closed")
        for message in encode_notices(notices):
            await self._broadcast.publish(self._channel, message)

    async def receive(self) -> AsyncGenerator[list[Notice] | Resync, None]:
        """Each batch of notices, or RESYNC after a possible loss; ends when the bus closes."""
        if self._closed:
            raise BusClosed("cannot receive: the bus is closed")
        while (event := await self._next_event()) is not None:
            if isinstance(event, ResyncEvent):
                yield RESYNC
                continue
            try:
                notices = decode_notices(event.message)
            except ValueError:
                # Never log the payload: it is not ours to trust, and could be large.
                logger.warning("bus: skipped a malformed message of %d chars", len(event.message))
                continue
            if notices:
                yield notices

    async def _next_event(self) -> Event | None:
        """The next event for this subscription; None once closed; raises if the listener died."""
        getter = asyncio.ensure_future(self._subscriber.get())
        try:
            await asyncio.wait((getter, self._listener), return_when=asyncio.FIRST_COMPLETED)
        finally:
            getter.cancel()  # no-op once it has its event
        # Check the getter first: events delivered before the listener died are still good.
        if getter.done() and not getter.cancelled():
            try:
                return getter.result()
            except Unsubscribed:
                return None
        if self._closed:
            return None
        cause = None if self._listener.cancelled() else self._listener.exception()
        raise BusDisconnected() from cause


def _report_stopped(listener: asyncio.Task[None]) -> None:
    if not listener.cancelled() and (exc := listener.exception()) is not None:
        logger.error("bus: listener stopped; receivers will fail", exc_info=exc)
