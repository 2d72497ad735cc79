"""The queue's own channel on the bus: "work was queued" and "a control request is stored".

Runners listen here, as a Postgres job queue's worker listens for jobs: a signal only says "look
now"; what to do is always read from the database (claims, control requests), so a lost signal
costs one poll interval, never correctness. Signals reach this process's listeners at once and
other processes through the bus; a process ignores its own signals coming back over the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import msgspec

from runwire.events.bus import SIGNALS, Bus, Resync
from runwire.faults import report

logger = logging.getLogger(__name__)


class _WireSignal(msgspec.Struct, array_like=True):
    """[sender, execution_id or null]: null means queued work, an id a control request."""

    sender: str
    execution_id: str | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_WireSignal).decode


class QueueSignals:
    """Publishes queue signals and wakes this process's listeners when any process sends one."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._sender = uuid.uuid4().hex[:12]
        self._listeners: set[asyncio.Event] = set()
        self._sending: set[asyncio.Task[None]] = set()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, bus: Bus) -> AsyncIterator[QueueSignals]:
        """Receive the channel for the block; leaving it waits for signals still being sent."""
        signals = cls(bus)
        receiving = asyncio.create_task(signals._receive(), name="runwire-queue-signals")
        try:
            yield signals
        finally:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
            if signals._sending:
                await asyncio.wait(signals._sending)

    def queued(self) -> None:
        """An execution was queued or requeued: runners everywhere should claim now."""
        self._send(None)

    def queued_here(self) -> None:
        """Queued work announced on the bus by the statement that stored it (see
        `queued_notification`): wake this process's runners."""
        self._wake()

    def queued_notification(self) -> tuple[str, str]:
        """`queued()`'s bus message as (wire channel, message), for a `pg_notify` in the
        transaction that queues the work (this process ignores it coming back, as its own)."""
        return self._bus.notification(SIGNALS, _encode(_WireSignal(self._sender)).decode())

    def control_requested(self, execution_id: str) -> None:
        """A control request for `execution_id` was stored: its runner should apply it now."""
        self._send(execution_id)

    async def listen(self) -> AsyncIterator[None]:
        """Yields after each signal (coalesced: several signals between reads are one)."""
        arrived = asyncio.Event()
        self._listeners.add(arrived)
        try:
            while True:
                await arrived.wait()
                arrived.clear()
                yield
        finally:
            self._listeners.discard(arrived)

    def _wake(self) -> None:
        for arrived in self._listeners:
            arrived.set()

    def _send(self, execution_id: str | None) -> None:
        self._wake()
        # In the background: the caller (a mutation) does not wait for the bus round trip.
        message = _encode(_WireSignal(self._sender, execution_id)).decode()
        task = asyncio.get_running_loop().create_task(self._publish(message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish(self, message: str) -> None:
        try:
            await self._bus.publish(SIGNALS, message)
        except Exception as error:
            # What was signalled is stored; other runners find it at their next poll.
            report(logger, "queue signals: publishing", error)

    async def _receive(self) -> None:
        try:
            async for message in self._bus.receive(SIGNALS):
                if isinstance(message, Resync):
                    self._wake()  # signals may have been lost: look now
                    continue
                try:
                    signal = _decode(message)
                except msgspec.DecodeError:
                    logger.warning("queue signals: skipped a malformed message")
                    continue
                if signal.sender != self._sender:
                    self._wake()
        except Exception:
            # Runners still poll: other processes' work is found, only later.
            logger.exception("queue signals: the bus subscription failed; runners poll")
