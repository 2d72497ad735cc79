"""The batched event writer: persist a few milliseconds' worth of events, then publish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from runwire.db.events import EventRepository
from runwire.domain.models import Event
from runwire.domain.ports import EventPublisher

logger = logging.getLogger(__name__)

_MAX_BATCH = 5000
_FIRST_RETRY_SECONDS = 0.05
_RETRY_CAP_SECONDS = 2.0


class EventLog:
    """Appends events in order; each flush is one transaction, then one publish."""

    def __init__(
        self, events: EventRepository, publisher: EventPublisher, flush_interval: float
    ) -> None:
        self._events = events
        self._publisher = publisher
        self._flush_interval = flush_interval
        self._pending: list[Event] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._writing = False
        self._held: dict[str, list[Event]] = {}
        self._retry_delay = _FIRST_RETRY_SECONDS

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, events: EventRepository, publisher: EventPublisher, flush_interval: float
    ) -> AsyncIterator[EventLog]:
        """The writer task lives for the block; leaving it flushes everything appended."""
        log = cls(events, publisher, flush_interval)
        task = asyncio.create_task(log._write_forever(), name="runwire-event-log")
        try:
            yield log
        finally:
            log._closing = True
            log._wakeup.set()
            await task

    def append(self, event: Event) -> None:
        """Queue one event; the caller (one writer per execution) guarantees seq order."""
        held = self._held.get(event.execution_id)
        if held is not None:
            held.append(event)  # behind its execution's held events, to keep seq order
        else:
            self._pending.append(event)
        self._wakeup.set()

    async def persisted(self) -> None:
        """Wait until everything appended so far is written, or held after a rejected write."""
        if not self._pending and not self._writing:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    async def _write_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                # Held events are retried on a backoff even when nothing new arrives.
                async with asyncio.timeout(self._retry_delay if self._held else None):
                    await self._wakeup.wait()
            self._wakeup.clear()
            if not self._closing:
                # Let events arriving within the interval join this batch: one transaction
                # and one notice per burst instead of one per event.
                await asyncio.sleep(self._flush_interval)
            self._writing = True
            while self._pending:
                batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
                await self._write(batch)
            await self._retry_held()
            self._writing = False
            # Everything appended before any waiter registered is now written (or held).
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            if self._closing and not self._pending:
                self._report_unwritten()
                return

    async def _write(self, batch: list[Event]) -> None:
        """One transaction for the batch; if it fails, each execution's events on their own."""
        if await self._try(batch):
            return
        # One execution's bad data (or a database outage) must not block the others: write
        # per execution, and hold what still fails to retry later in its own seq order.
        groups: dict[str, list[Event]] = {}
        for event in batch:
            groups.setdefault(event.execution_id, []).append(event)
        for execution_id, group in groups.items():
            if not await self._try(group):
                self._held.setdefault(execution_id, []).extend(group)
                logger.error(
                    "event log: holding %d events of execution %s after a failed write",
                    len(group),
                    execution_id,
                )
        # Later events of a held execution must queue behind it, not overtake it.
        self._pending, diverted = [], self._pending
        for event in diverted:
            self.append(event)

    async def _retry_held(self) -> None:
        if not self._held:
            return
        progress = False
        for execution_id, events in list(self._held.items()):
            if await self._try(events):
                del self._held[execution_id]
                progress = True
        self._retry_delay = (
            _FIRST_RETRY_SECONDS if progress else min(self._retry_delay * 2, _RETRY_CAP_SECONDS)
        )

    async def _try(self, events: list[Event]) -> bool:
        try:
            await self._events.append(events)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("event log: writing %d events failed", len(events))
            return False
        await self._publisher.publish(events)  # persist, then publish
        return True

    def _report_unwritten(self) -> None:
        for execution_id, events in self._held.items():
            logger.error(
                "event log: shutting down with %d events of execution %s unwritten (seq %d-%d)",
                len(events),
                execution_id,
                events[0].seq,
                events[-1].seq,
            )
