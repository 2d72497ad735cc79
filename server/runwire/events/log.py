"""The batched event writer: persist a few milliseconds' worth of events, then publish.

Whoever produces an execution's events (its runner) appends them here, numbered and in order.
Only the writer task touches what is not yet stored: `append` puts an event in the intake, the
writer moves it to its execution's outbox, writes outboxes in batches (one transaction each),
and takes events out of an outbox only once they are committed. So an event accepted is either
stored, in seq order, or reported as refused — never dropped because it arrived while a write
was being retried.

A write that fails for one execution does not hold up the others. While the database is out of
reach the execution's events wait in its outbox and are retried with backoff; the log says so
once, and again when it recovers. The database can also refuse an execution's events for good:
its lease was taken over by another runner (the events are not this runner's to write), or a
value could not be stored. Those events are not retried; `Ownership.lost` tells the run, which
stops. Each execution may have at most `limit` events (or UNWRITTEN_BYTES of output) unwritten:
its producer waits in `room()`.

Fairness: a batch shares MAX_BATCH events and MAX_BATCH_BYTES of output out between the
executions with events due, every one of them getting at least one event in, so an execution that
floods cannot make another's events wait behind megabytes of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from runwire.db.events import EventRepository
from runwire.domain.models import Event, EventType, Lease
from runwire.domain.ports import EventPublisher
from runwire.errors import LeaseLost
from runwire.faults import is_refusal, report
from runwire.metrics import Metrics

logger = logging.getLogger(__name__)

MAX_BATCH = 5000
"""Events written in one transaction at most."""
MAX_BATCH_BYTES = 512 * 1024
"""Output text written in one transaction at most (an execution with events due gets one in
anyway): a write takes a few ms, so a quiet execution's event waits for no more than that. It
also bounds a live subscription message, under the 1 MiB a websockets client accepts by default."""
UNWRITTEN_LIMIT = 20_000
"""Events of one execution the log holds unwritten before its producer must wait."""
UNWRITTEN_BYTES = 8 * 1024 * 1024
"""Output text of one execution the log holds unwritten before its producer must wait: with 32 KiB
chunks, 20,000 events would be 640 MB of memory."""
_EVENT_OVERHEAD = 200
"""What an event weighs besides its output text, for the byte bounds above."""
_FIRST_RETRY_SECONDS = 0.05
_RETRY_CAP_SECONDS = 2.0


@dataclass(eq=False, slots=True)
class Ownership:
    """A runner's right to write one execution's events, under its lease.

    `lost` is set once the database refused them for good; `reason` says why, `lease_lost`
    whether because another runner holds the execution now (else it refused their data), and
    `first_refused` is the seq of the first event that was not stored (those before it are).
    """

    lease: Lease
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    lease_lost: bool = False
    first_refused: int | None = None

    def lose(self, reason: str, first_refused: int, *, lease_lost: bool) -> None:
        if not self.lost.is_set():
            self.reason, self.first_refused, self.lease_lost = reason, first_refused, lease_lost
            self.lost.set()


@dataclass(eq=False, slots=True)
class _Outbox:
    """One execution's accepted events not yet stored, oldest first, and its retry state."""

    events: deque[Event] = field(default_factory=deque)
    retry_at: float = 0.0
    delay: float = _FIRST_RETRY_SECONDS
    failing: bool = False


class EventLog:
    """Appends events in order; each flush is one transaction, then one publish."""

    def __init__(
        self,
        events: EventRepository,
        publisher: EventPublisher,
        flush_interval: float,
        limit: int = UNWRITTEN_LIMIT,
        limit_bytes: int = UNWRITTEN_BYTES,
        metrics: Metrics | None = None,
    ) -> None:
        self._events = events
        self._metrics = metrics or Metrics()
        self._publisher = publisher
        self._flush_interval = flush_interval
        self._limit = limit
        self._limit_bytes = limit_bytes
        self._intake: list[Event] = []
        self._outboxes: dict[str, _Outbox] = {}
        self._owners: dict[str, Ownership] = {}
        # Executions whose events the database refused: the first refused seq, and how many
        # events came after it (refused unwritten, reported when the execution is disowned).
        self._refused: dict[str, int] = {}
        self._refused_later: dict[str, int] = {}
        # Per execution: events accepted and neither stored nor refused yet.
        self._unwritten: dict[str, int] = {}
        self._unwritten_bytes: dict[str, int] = {}
        self._drained: dict[str | None, list[asyncio.Future[None]]] = {}
        self._room: dict[str, list[asyncio.Future[None]]] = {}
        self._wakeup = asyncio.Event()
        self._closing = False

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        events: EventRepository,
        publisher: EventPublisher,
        flush_interval: float,
        limit: int = UNWRITTEN_LIMIT,
        limit_bytes: int = UNWRITTEN_BYTES,
        metrics: Metrics | None = None,
    ) -> AsyncIterator[EventLog]:
        """The writer task lives for the block; leaving it flushes everything appended."""
        log = cls(events, publisher, flush_interval, limit, limit_bytes, metrics)
        task = asyncio.create_task(log._write_forever(), name="runwire-event-log")
        try:
            yield log
        finally:
            log._closing = True
            log._wakeup.set()
            await task

    @property
    def unwritten(self) -> int:
        """Events accepted and not yet stored (or refused), all executions together."""
        return sum(self._unwritten.values())

    def own(self, execution_id: str, lease: Lease) -> Ownership:
        """Write `execution_id`'s events only while the database says `lease` holds it."""
        ownership = self._owners[execution_id] = Ownership(lease)
        return ownership

    def disown(self, execution_id: str) -> None:
        """Forget the execution's lease and refusal (its runner let go of it).

        Only once its events are all stored or refused (`persisted`): a later write would not
        be checked against the lease.
        """
        self._owners.pop(execution_id, None)
        self._refused.pop(execution_id, None)
        if later := self._refused_later.pop(execution_id, 0):
            logger.error(
                "event log: %d later events of execution %s not written in all",
                later,
                execution_id,
            )

    def append(self, event: Event) -> None:
        """Accept one event; the caller (one writer per execution) guarantees seq order.

        After the database refused an execution's events, its later events are refused too,
        except one numbered at the first refused seq: that one replaces what was refused.
        """
        refused_from = self._refused.get(event.execution_id) if self._refused else None
        if refused_from is not None:
            if event.seq != refused_from:
                later = self._refused_later.get(event.execution_id, 0)
                if not later:
                    logger.error(
                        "event log: refusing later events of execution %s too (from seq %d)",
                        event.execution_id,
                        event.seq,
                    )
                self._refused_later[event.execution_id] = later + 1
                return
            del self._refused[event.execution_id]
        self._intake.append(event)
        execution_id = event.execution_id
        self._unwritten[execution_id] = self._unwritten.get(execution_id, 0) + 1
        self._unwritten_bytes[execution_id] = self._unwritten_bytes.get(execution_id, 0) + _weight(
            event
        )
        self._wakeup.set()

    def backlogged(self, execution_id: str) -> bool:
        """Whether the execution has too much unwritten (its producer should wait)."""
        return (
            self._unwritten.get(execution_id, 0) >= self._limit
            or self._unwritten_bytes.get(execution_id, 0) >= self._limit_bytes
        )

    async def room(self, execution_id: str) -> None:
        """Wait while the execution is backlogged."""
        while self.backlogged(execution_id):
            await _wait(self._room, execution_id)

    async def persisted(self, execution_id: str | None = None) -> None:
        """Wait until every event appended so far (of one execution) is stored or refused."""
        while self._unwritten.get(execution_id, 0) if execution_id else self._unwritten:
            await _wait(self._drained, execution_id)

    # ---- the writer task ------------------------------------------------------------------

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._closing:
                with contextlib.suppress(TimeoutError):
                    # Failing outboxes are retried on their backoff even when nothing new
                    # arrives.
                    async with asyncio.timeout(self._next_retry_in(loop.time())):
                        await self._wakeup.wait()
                self._wakeup.clear()
                if not self._closing:
                    # Let events arriving within the interval join this batch: one transaction
                    # and one notice per burst instead of one per event.
                    await asyncio.sleep(self._flush_interval)
                try:
                    while batch := self._next_batch(loop.time()):
                        await self._write(batch)
                except Exception as error:
                    # A defect here must not stop every later write: say so, and go on.
                    report(logger, "event log: the writer", error)
                    await asyncio.sleep(_FIRST_RETRY_SECONDS)
            # Closing: one more attempt for everything, failing outboxes included.
            for box in self._outboxes.values():
                box.retry_at = 0.0
            while batch := self._next_batch(loop.time()):
                await self._write(batch)
            self._report_unwritten()
        finally:
            # Nothing will be written any more: nobody may wait for it.
            for waiters in (*self._drained.values(), *self._room.values()):
                _release(waiters)

    def _next_retry_in(self, now: float) -> float | None:
        waiting = [box.retry_at for box in self._outboxes.values() if box.failing and box.events]
        return max(0.0, min(waiting) - now) if waiting else None

    def _next_batch(self, now: float) -> dict[str, list[Event]]:
        """Up to MAX_BATCH events taken from the outboxes that are due, shared out fairly."""
        intake, self._intake = self._intake, []
        for event in intake:
            box = self._outboxes.get(event.execution_id)
            if box is None:
                box = self._outboxes[event.execution_id] = _Outbox()
            box.events.append(event)
        due = [
            execution_id
            for execution_id, box in self._outboxes.items()
            if box.events and (not box.failing or box.retry_at <= now)
        ]
        batch: dict[str, list[Event]] = {}
        room, room_bytes = MAX_BATCH, MAX_BATCH_BYTES
        # Each due execution gets an equal share of the events and of the output text first
        # (and at least one event), so one that floods cannot crowd the others out of the
        # batch; what is left over goes to whoever has more.
        share = max(1, MAX_BATCH // len(due)) if due else 0
        share_bytes = MAX_BATCH_BYTES // len(due) if due else 0
        for execution_id in due:
            events = self._outboxes[execution_id].events
            taken = batch[execution_id] = []
            size = 0
            while events and len(taken) < share and (size < share_bytes or not taken):
                event = events.popleft()
                taken.append(event)
                size += _text_size(event)
            room -= len(taken)
            room_bytes -= size
        for execution_id in due:
            events = self._outboxes[execution_id].events
            taken = batch[execution_id]
            while events and room > 0 and room_bytes > 0:
                event = events.popleft()
                taken.append(event)
                room -= 1
                room_bytes -= _text_size(event)
        return {execution_id: events for execution_id, events in batch.items() if events}

    async def _write(self, batch: dict[str, list[Event]]) -> None:
        """One transaction for the batch; if it fails, each execution's events on their own."""
        error = await self._store(batch)
        if error is None:
            return
        if len(batch) == 1:
            await self._failed(batch, error)
            return
        # One execution's refused data (or its lost lease) must not block the others.
        for execution_id, events in batch.items():
            alone = {execution_id: events}
            if (error := await self._store(alone)) is not None:
                await self._failed(alone, error)

    async def _store(self, batch: dict[str, list[Event]]) -> Exception | None:
        """Write and publish `batch` (its events leave their outboxes); else why it failed."""
        events = [event for group in batch.values() for event in group]
        leases = {
            execution_id: self._owners[execution_id].lease
            for execution_id in batch
            if execution_id in self._owners
        }
        began = time.perf_counter()
        try:
            await self._events.append(events, leases)
        except asyncio.CancelledError:
            self._put_back(batch)
            raise
        except Exception as error:
            return error
        self._metrics.flushed(time.perf_counter() - began)
        self._stored(batch)
        await self._publisher.publish(events)  # persist, then publish
        return None

    def _stored(self, batch: dict[str, list[Event]]) -> None:
        for execution_id, stored in batch.items():
            box = self._outboxes.get(execution_id)
            if box is not None and box.failing:
                logger.info("event log: events of execution %s are written again", execution_id)
                box.failing, box.delay = False, _FIRST_RETRY_SECONDS
            if box is not None and not box.events:
                del self._outboxes[execution_id]
            self._settle(execution_id, stored)

    async def _failed(self, batch: dict[str, list[Event]], error: Exception) -> None:
        """One execution's events were not written: refused for good, or back to retry later."""
        ((execution_id, events),) = batch.items()
        if is_refusal(error) and await self._stored_before(execution_id, events):
            return
        if isinstance(error, LeaseLost):
            self._refuse(
                execution_id, events, "its lease is held by another runner now", lease_lost=True
            )
        elif is_refusal(error):
            self._refuse(
                execution_id, events, f"the database refused them: {error!r}", lease_lost=False
            )
        else:
            box = self._outboxes[execution_id]
            if not box.failing:
                logger.error(
                    "event log: writing events of execution %s failed (%s); retrying",
                    execution_id,
                    type(error).__name__,
                )
            self._put_back(batch)
            box.failing = True
            box.retry_at = asyncio.get_running_loop().time() + box.delay
            box.delay = min(box.delay * 2, _RETRY_CAP_SECONDS)

    async def _stored_before(self, execution_id: str, events: list[Event]) -> bool:
        """Whether a write that seemed to fail had committed: its events are taken as stored.

        A connection lost after COMMIT was sent leaves the client not knowing; the retry then
        meets its own rows (a duplicate seq). Those are stored: publish them, and let the rest of
        the execution's events be written next.
        """
        try:
            through = await self._events.stored_through(execution_id)
        except Exception:
            return False  # the write's own error decides
        stored = [event for event in events if event.seq <= through]
        if not stored:
            return False
        logger.info(
            "event log: events of execution %s up to seq %d were stored by an earlier attempt",
            execution_id,
            through,
        )
        rest = events[len(stored) :]
        if rest:
            self._put_back({execution_id: rest})
        self._stored({execution_id: stored})
        await self._publisher.publish(stored)
        self._wakeup.set()
        return True

    def _put_back(self, batch: dict[str, list[Event]]) -> None:
        """Return unwritten events to the front of their outboxes, in their order."""
        for execution_id, events in batch.items():
            self._outboxes[execution_id].events.extendleft(reversed(events))

    def _refuse(
        self, execution_id: str, events: list[Event], reason: str, *, lease_lost: bool
    ) -> None:
        """Give up on the execution's unwritten events (these, its outbox, its intake)."""
        box = self._outboxes.pop(execution_id, None)
        later = [event for event in self._intake if event.execution_id == execution_id]
        if later:
            self._intake = [event for event in self._intake if event.execution_id != execution_id]
        refused = [*events, *(box.events if box else ()), *later]
        logger.error(
            "event log: %d events of execution %s (seq %d-%d) not written: %s",
            len(refused),
            execution_id,
            refused[0].seq,
            refused[-1].seq,
            reason,
        )
        self._refused[execution_id] = refused[0].seq
        ownership = self._owners.get(execution_id)
        if ownership is not None:
            ownership.lose(reason, refused[0].seq, lease_lost=lease_lost)
        self._settle(execution_id, refused)

    def _settle(self, execution_id: str, events: Sequence[Event]) -> None:
        """`events` of the execution left the log: wake who waits for that."""
        left = self._unwritten.get(execution_id, 0) - len(events)
        left_bytes = self._unwritten_bytes.get(execution_id, 0) - sum(map(_weight, events))
        if left > 0:
            self._unwritten[execution_id] = left
            self._unwritten_bytes[execution_id] = left_bytes
        else:
            self._unwritten.pop(execution_id, None)
            self._unwritten_bytes.pop(execution_id, None)
            _release(self._drained.pop(execution_id, []))
            if not self._unwritten:
                _release(self._drained.pop(None, []))
        if not self.backlogged(execution_id):
            _release(self._room.pop(execution_id, []))

    def _report_unwritten(self) -> None:
        for execution_id, box in self._outboxes.items():
            if box.events:
                logger.error(
                    "event log: shutting down with %d events of execution %s unwritten (seq %d-%d)",
                    len(box.events),
                    execution_id,
                    box.events[0].seq,
                    box.events[-1].seq,
                )


def _text_size(event: Event) -> int:
    text = event.data.get("text") if event.type is EventType.OUTPUT else None
    return len(text) if isinstance(text, str) else 0


def _weight(event: Event) -> int:
    """About what the event costs in memory: its output text and the rest."""
    return _EVENT_OVERHEAD + _text_size(event)


_K = TypeVar("_K", str, str | None)


async def _wait(waiters: dict[_K, list[asyncio.Future[None]]], key: _K) -> None:
    waiter = asyncio.get_running_loop().create_future()
    waiters.setdefault(key, []).append(waiter)
    await waiter


def _release(waiters: Sequence[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
