"""The batched event writer: persist a few milliseconds' worth of events, then publish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from runwire.db.repository import Repository
from runwire.domain.models import Event
from runwire.events.bus import Bus, Notice

logger = logging.getLogger(__name__)

_MAX_BATCH = 5000
_RETRY_CAP_SECONDS = 2.0


class EventLog:
    """Appends events in order; each flush is one transaction, then one bus publish."""

    def __init__(
        self,
        repository: Repository,
        bus: Bus,
        on_persisted: Callable[[Sequence[Event]], None],
        flush_interval: float,
    ) -> None:
        self._repository = repository
        self._bus = bus
        self._on_persisted = on_persisted
        self._flush_interval = flush_interval
        self._pending: list[Event] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._writing = False

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        repository: Repository,
        bus: Bus,
        on_persisted: Callable[[Sequence[Event]], None],
        flush_interval: float,
    ) -> AsyncIterator[EventLog]:
        """The writer task lives for the block; leaving it flushes everything appended."""
        log = cls(repository, bus, on_persisted, flush_interval)
        task = asyncio.create_task(log._write_forever(), name="runwire-event-log")
        try:
            yield log
        finally:
            log._closing = True
            log._wakeup.set()
            await task

    def append(self, event: Event) -> None:
        """Queue one event; the caller (one writer per execution) guarantees seq order."""
        self._pending.append(event)
        self._wakeup.set()

    async def persisted(self) -> None:
        """Wait until everything appended so far is committed and published."""
        if not self._pending and not self._writing:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    async def _write_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._pending and self._closing:
                return
            if not self._closing:
                # Let events arriving within the interval join this batch: one transaction
                # and one notice per burst instead of one per event.
                await asyncio.sleep(self._flush_interval)
            self._writing = True
            while self._pending:
                batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
                await self._write(batch)
            self._writing = False
            # Everything appended before any waiter registered is now written.
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            if self._closing:
                return

    async def _write(self, batch: list[Event]) -> None:
        delay = 0.05
        while True:
            try:
                await self._repository.append_events(batch)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never drop events: a database hiccup delays them, it does not lose them.
                logger.exception("event log: writing %d events failed; retrying", len(batch))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_CAP_SECONDS)
        # Persist, then publish: local followers first (lowest latency), then other processes.
        self._on_persisted(batch)
        try:
            await self._bus.publish(_notices(batch))
        except Exception:
            # The events are safe in the database; remote followers find them on resync.
            logger.exception("event log: publishing notices failed")


def _notices(batch: Sequence[Event]) -> list[Notice]:
    ranges: dict[str, list[int]] = {}
    for event in batch:
        bounds = ranges.get(event.execution_id)
        if bounds is None:
            ranges[event.execution_id] = [event.seq, event.seq]
        else:
            bounds[1] = event.seq
    return [Notice(execution_id, first, last) for execution_id, (first, last) in ranges.items()]
