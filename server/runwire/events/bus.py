"""The cross-process bus: small text messages on named channels, one subscription per channel.

Built on broadcaster (`Broadcast(backend=...)` + `Broadcast.subscribe`) with the backends in
`bus_backends`. A process subscribes to both channels once, at connect: `EVENTS` carries notices
that events were committed (events/notices.py; the hub listens), `SIGNALS` carries the queue's
wake-ups (queue/signals.py; the runner listens). Broadcaster's subscriber queues are unbounded;
that is safe here because each channel has exactly one subscription per process, drained by one
fast consumer that never awaits slow followers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Final, final
from urllib.parse import urlsplit

from broadcaster import Broadcast, Event

from runwire.errors import RunwireError
from runwire.events.bus_backends import Backend, ResyncEvent, backend_for
from runwire.events.compat.broadcaster import Subscriber, Unsubscribed, listener_task

logger = logging.getLogger(__name__)

EVENTS: Final = "events"
"""Notices that events were committed (see events/notices.py)."""
SIGNALS: Final = "queue"
"""The queue's wake-ups: work was queued, a control request was stored (see queue/signals.py)."""
CHANNELS: Final = (EVENTS, SIGNALS)
DEFAULT_NAMESPACE: Final = "runwire"
"""Channels on the wire are `<namespace>.<channel>`: `runwire.events`, `runwire.queue`."""
MAX_MESSAGE_BYTES: Final = 7_500
"""Every message is strictly smaller than this (Postgres NOTIFY payloads must be under 8000)."""


class BusClosed(RunwireError):
    """The bus is closed."""


class BusDisconnected(RunwireError):
    """The bus listener stopped; messages can no longer be received."""


@final
class Resync:
    """The bus may have lost messages (a reconnect): whoever listens must re-read the database."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RESYNC"


RESYNC: Final = Resync()


class Bus:
    """This process's subscriptions to the bus's channels, and its way to publish."""

    def __init__(
        self,
        broadcast: Broadcast,
        backend: Backend,
        namespace: str,
        subscribers: dict[str, Subscriber],
        listener: asyncio.Task[None],
        url: str = "memory://",
    ) -> None:
        self._url = url
        self._broadcast = broadcast
        self._backend = backend
        self._namespace = namespace
        self._subscribers = subscribers
        self._listener = listener
        self._closed = False

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, url: str = "memory://", namespace: str = DEFAULT_NAMESPACE
    ) -> AsyncIterator[Bus]:
        """Subscribe this process; on entry every channel is live (later publishes arrive).

        Buses of different namespaces on one server hear nothing of each other.
        """
        wire = [f"{namespace}.{channel}" for channel in CHANNELS]
        backend = backend_for(url)
        broadcast = Broadcast(backend=backend)
        await broadcast.connect()
        # Broadcaster leaves subscribers waiting forever if its listener dies; the bus watches
        # the task so receive() fails loudly instead.
        listener = listener_task(broadcast)
        listener.add_done_callback(_report_stopped)
        try:
            # Subscribe on the backend first, all channels at once, so a failure surfaces as
            # itself: broadcaster's subscribe() would mask it with a KeyError from its cleanup.
            # Its own calls below are then no-ops.
            await backend.subscribe_all(wire)
            async with contextlib.AsyncExitStack() as stack:
                subscribers = {
                    channel: await stack.enter_async_context(broadcast.subscribe(name))
                    for channel, name in zip(CHANNELS, wire, strict=True)
                }
                bus = cls(broadcast, backend, namespace, subscribers, listener, url)
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

    @property
    def listening(self) -> bool:
        """Whether messages of other processes reach this one now."""
        return not self._closed and not self._listener.done() and self._backend.connected

    async def publish(self, channel: str, message: str) -> None:
        """Send one message to every process subscribed to `channel`, this one included."""
        if self._closed:
            raise BusClosed("cannot publish: the bus is closed")
        await self._broadcast.publish(*self.notification(channel, message))

    def is_database(self, database_url: str) -> bool:
        """Whether the bus is LISTEN/NOTIFY on the database at `database_url`: a statement
        there can then publish with `pg_notify` (see `notification`), at its commit."""
        scheme = urlsplit(self._url).scheme
        return self._url == database_url and scheme in ("postgres", "postgresql")

    def notification(self, channel: str, message: str) -> tuple[str, str]:
        """(wire channel, message): what `publish` sends, for a `pg_notify` in a transaction."""
        if channel not in CHANNELS:
            raise ValueError(f"no bus channel {channel!r}")
        if len(message.encode()) >= MAX_MESSAGE_BYTES:
            raise ValueError(f"a bus message must be under {MAX_MESSAGE_BYTES} bytes")
        return f"{self._namespace}.{channel}", message

    async def receive(self, channel: str) -> AsyncGenerator[str | Resync, None]:
        """Each message on `channel`, or RESYNC after a possible loss; ends when the bus closes."""
        if self._closed:
            raise BusClosed("cannot receive: the bus is closed")
        subscriber = self._subscribers[channel]
        while (event := await self._next_event(subscriber)) is not None:
            yield RESYNC if isinstance(event, ResyncEvent) else event.message

    async def _next_event(self, subscriber: Subscriber) -> Event | None:
        """The next event for this subscription; None once closed; raises if the listener died."""
        getter = asyncio.ensure_future(subscriber.get())
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
