"""In-process fan-out: one bus subscription feeds every local follower through bounded buffers.

Two kinds of local subscriber: followers of one execution's events (`Hub.follow`), and watchers
of every execution's status and usage changes (`Hub.watch`, the live list of executions).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import OrderedDict, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from runwire.db.events import EventRepository
from runwire.db.executions import ExecutionRepository
from runwire.db.history import HistoryRepository
from runwire.domain.clock import utc_now
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus
from runwire.domain.queries import ExecutionFilter, matches
from runwire.errors import NotFound
from runwire.events.bus import Bus, Resync
from runwire.events.notices import Notice, receive_notices
from runwire.faults import report

logger = logging.getLogger(__name__)

_PAGE = 1000
_BATCH_TEXT = 512 * 1024
"""Output text in one batch read from the database at most (one event more if it alone is
larger): a late joiner of a step that printed megabytes gets them in messages of this size, each
rendered and sent on its own, not one message that holds the loop (and others' events) up."""
_SEEN_EXECUTIONS = 10_000
"""How many executions' last status-bearing seq the hub remembers, to skip its own notices."""
_PENDING_WORK = 1_000
"""Status changes waiting for their rows beyond this many batches become one refresh."""
_REFRESH_LIMIT = 5_000
"""At most this many executions are restated by one refresh, newest first."""
# A refresh also restates executions that ended this long before the possible loss: events
# carry their writer's clock and are committed (and announced) a little after they happen.
_REFRESH_MARGIN = timedelta(seconds=10)
_USAGE_SECONDS = 0.5
"""Usage changes of an execution reach watchers at most this often: a model streaming many small
usage reports is one update per interval in a list, with the totals as stored at its end."""
_FIRST_RETRY_SECONDS = 0.05
_RETRY_CAP_SECONDS = 5.0


class EventBatch(list[Event]):
    """One live batch, the same object for every local follower of its execution.

    Layers above keep their views of it (a GraphQL payload, say) in `views`, so work done for a
    batch is done once per process, not once per follower.
    """

    __slots__ = ("views",)

    def __init__(self, events: Iterable[Event] = ()) -> None:
        super().__init__(events)
        self.views: dict[object, object] = {}


def _by_text_size(page: list[Event]) -> Iterator[list[Event]]:
    """`page` cut into runs of at most _BATCH_TEXT of output text (usually the whole page)."""
    batch: list[Event] = []
    size = 0
    for event in page:
        text = event.data.get("text") if event.type is EventType.OUTPUT else None
        length = len(text) if isinstance(text, str) else 0
        if batch and size + length > _BATCH_TEXT:
            yield batch
            batch, size = [], 0
        batch.append(event)
        size += length
    if batch:
        yield batch


class _Reread:
    """Marker in a follower's buffer: live events may be missing, read the database."""


_REREAD = _Reread()


@dataclass(eq=False, slots=True)
class _Follower:
    """One local subscriber's bounded buffer of event batches."""

    capacity: int
    # A list, and a future made only while waiting, rather than a deque and an asyncio.Event
    # (each allocates a 64-slot block): idle followers are the common case, 10k per process.
    batches: list[list[Event] | _Reread] = field(default_factory=list)
    waiter: asyncio.Future[None] | None = None

    def offer(self, item: list[Event] | _Reread) -> None:
        if len(self.batches) >= self.capacity:
            # Too slow to keep up live: drop what is buffered and let the follower read the
            # database from its last seq instead. Memory stays bounded; nothing is lost.
            self.batches.clear()
            item = _REREAD
        self.batches.append(item)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def take(self) -> list[Event] | _Reread:
        while not self.batches:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.batches.pop(0)  # at most `capacity` items


@dataclass(slots=True)
class _Topic:
    """The local followers of one execution and the highest seq handed to them."""

    followers: set[_Follower] = field(default_factory=set)
    delivered_seq: int = 0


class UpdateKind(StrEnum):
    """Why a watcher is told about an execution."""

    # It changed to the update's status at the update's time, or (the same status) its usage
    # totals changed: a client that applies updates by status stays correct.
    CHANGED = "CHANGED"
    CURRENT = "CURRENT"  # restated as read at the update's time: updates may have been missed


@dataclass(frozen=True, slots=True)
class ExecutionUpdate:
    """An execution's status or usage changed (or it is restated); `execution` is its row read
    afterwards."""

    execution: Execution
    status: ExecutionStatus
    at: datetime
    kind: UpdateKind

    @property
    def subject(self) -> Execution:
        """The execution as filters judge it: with this update's status (the row may be ahead)."""
        if self.execution.status is self.status:
            return self.execution
        return dataclasses.replace(self.execution, status=self.status)


@dataclass(eq=False, slots=True)
class _Watcher:
    """One local subscriber to status changes: its filter and bounded buffer of updates."""

    where: ExecutionFilter
    capacity: int
    updates: deque[ExecutionUpdate] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Executions last shown to this watcher as matching and not ended. When one stops matching
    # (its status left the filter's statuses) the watcher gets that update too, so a live list
    # can drop it.
    shown: set[str] = field(default_factory=set)
    # Set while a refresh for this watcher is pending: restate what changed since then.
    refresh_since: datetime | None = None
    # True while `shown` is being filled with what matched when the watcher began (the list a
    # client reads after subscribing): any change meanwhile may take one of those out.
    seeding: bool = False

    def admits(self, update: ExecutionUpdate, subject: Execution) -> bool:
        """Whether the watcher gets `update`; remembers what it was shown."""
        execution_id = update.execution.id
        if matches(self.where, subject):
            if update.status.is_terminal:
                self.shown.discard(execution_id)
            else:
                self.shown.add(execution_id)
            return True
        if execution_id in self.shown or self.seeding:
            self.shown.discard(execution_id)
            return True
        return False

    def offer(self, update: ExecutionUpdate, *, restating: bool) -> bool:
        """Buffer `update`; True if the watcher fell too far behind and needs a refresh."""
        if len(self.updates) >= self.capacity:
            self._coalesce()
        overflow = len(self.updates) >= self.capacity and not restating
        if overflow:
            # As many different executions changed as the buffer holds: drop them all and
            # restate from the database instead. Memory stays bounded; nothing is lost.
            since = min(item.at for item in (*self.updates, update))
            self.updates.clear()
            if self.refresh_since is not None:
                self.refresh_since = min(self.refresh_since, since)
                return False  # a refresh is pending already; it now starts earlier
            self.refresh_since = since
            return True
        self.updates.append(update)
        self.ready.set()
        return False

    async def take(self) -> ExecutionUpdate:
        while not self.updates:
            self.ready.clear()
            await self.ready.wait()
        return self.updates.popleft()

    def _coalesce(self) -> None:
        """Keep only the latest update of each execution: a status list needs no more."""
        latest: dict[str, ExecutionUpdate] = {}
        for update in self.updates:
            latest.pop(update.execution.id, None)
            latest[update.execution.id] = update
        self.updates = deque(latest.values())


class _SeenSeqs:
    """The highest status-bearing seq seen per execution, for the most recent executions."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._seqs: OrderedDict[str, int] = OrderedDict()

    def get(self, execution_id: str) -> int:
        return self._seqs.get(execution_id, 0)

    def record(self, execution_id: str, seq: int) -> None:
        self._seqs[execution_id] = max(seq, self._seqs.get(execution_id, 0))
        self._seqs.move_to_end(execution_id)
        if len(self._seqs) > self._capacity:
            self._seqs.popitem(last=False)


@dataclass(frozen=True, slots=True)
class _LocalChanges:
    """Status events this process committed; their rows are read once for every watcher."""

    events: tuple[Event, ...]
    since: datetime


@dataclass(frozen=True, slots=True)
class _RemoteChanges:
    """(execution_id, after_seq, last_seq) ranges with status events other processes committed."""

    ranges: tuple[tuple[str, int, int], ...]
    since: datetime


@dataclass(frozen=True, slots=True)
class _UsageChanges:
    """Executions whose usage totals changed (in any process) during the last interval."""

    execution_ids: tuple[str, ...]
    since: datetime


@dataclass(frozen=True, slots=True)
class _Refresh:
    """Updates may be missing: restate executions not ended, or ended since `since`.

    For one watcher that fell behind, or (watcher None) for all of them.
    """

    since: datetime
    watcher: _Watcher | None = None


_Work = _LocalChanges | _RemoteChanges | _UsageChanges | _Refresh


class Hub:
    """Routes persisted events by execution id to local followers."""

    def __init__(
        self,
        executions: ExecutionRepository,
        events: EventRepository,
        history: HistoryRepository,
        buffer_batches: int,
    ) -> None:
        self._executions = executions
        self._events = events
        self._history = history
        self._buffer_batches = buffer_batches
        self._topics: dict[str, _Topic] = {}
        self._watchers: set[_Watcher] = set()
        # Status changes this process delivered or queued, so their bus notices coming back
        # (every backend echoes to the publisher) are not read and shown a second time.
        self._seen = _SeenSeqs(_SEEN_EXECUTIONS)
        # The same for usage changes; and those waiting for the interval's end, from when.
        self._usage_seen = _SeenSeqs(_SEEN_EXECUTIONS)
        self._usage_due: dict[str, datetime] = {}
        self._usage_noted = asyncio.Event()
        self._work: deque[_Work] = deque()
        self._work_ready = asyncio.Event()
        # The last moment the bus was known to be complete: a resync restates from here.
        self._in_sync_at = utc_now()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        executions: ExecutionRepository,
        events: EventRepository,
        history: HistoryRepository,
        bus: Bus,
        buffer_batches: int,
        bus_lag: Callable[[float], None] | None = None,
    ) -> AsyncIterator[Hub]:
        """Consume the process's notices from the bus, and publish status updates, for the block.

        `bus_lag` is told each notice message's time from publication to receipt (metrics).
        """
        hub = cls(executions, events, history, buffer_batches)
        updates = asyncio.create_task(hub._publish_updates(), name="runwire-hub-updates")
        usage = asyncio.create_task(hub._release_usage(), name="runwire-hub-usage")
        task = asyncio.create_task(hub._consume(bus, bus_lag), name="runwire-hub")
        try:
            yield hub
        finally:
            for running in (updates, usage, task):
                running.cancel()
            for running in (updates, usage, task):
                with contextlib.suppress(asyncio.CancelledError):
                    await running

    @property
    def follower_count(self) -> int:
        """Live local subscribers: followers of an execution's events and watchers of the list."""
        return sum(len(topic.followers) for topic in self._topics.values()) + len(self._watchers)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def delivered_seq(self, execution_id: str) -> int:
        """The highest seq handed to local followers of the execution; 0 if none follow it."""
        topic = self._topics.get(execution_id)
        return 0 if topic is None else topic.delivered_seq

    def deliver(self, events: Sequence[Event]) -> None:
        """Hand freshly committed events of this process to local followers (no DB read)."""
        by_execution: dict[str, EventBatch] = {}
        for event in events:
            if event.execution_id in self._topics:
                by_execution.setdefault(event.execution_id, EventBatch()).append(event)
        for execution_id, batch in by_execution.items():
            self._push(execution_id, batch)
        if self._watchers:
            self._note_local_changes(events)

    async def watch(self, where: ExecutionFilter) -> AsyncGenerator[ExecutionUpdate, None]:
        """Each status change of an execution matching `where` from now on, until closed.

        Also the change that takes an execution out of the filter that matched it when the watch
        began or since, and, at most once per _USAGE_SECONDS, a CHANGED update with the same
        status when an unfinished execution's usage totals changed. Where changes may have been
        missed (a bus resync, a full buffer), executions are restated as CURRENT updates.
        """
        watcher = _Watcher(where, self._buffer_batches)
        self._watchers.add(watcher)
        try:
            if where.statuses:
                await self._seed(watcher)
            while True:
                yield await watcher.take()
        finally:
            self._watchers.discard(watcher)

    async def _seed(self, watcher: _Watcher) -> None:
        """Count what matches the watcher's statuses now as shown to it.

        A client subscribes, then reads its list: that list holds executions this watcher never
        saw enter, and their change out of the filter must reach it too. (Without a status
        filter nothing leaves it: every status matches.)
        """
        watcher.seeding = True
        try:
            ids = await self._history.unfinished_ids(
                watcher.where.workspace, watcher.where.statuses, _REFRESH_LIMIT
            )
        finally:
            watcher.seeding = False
        watcher.shown.update(ids)

    async def follow(
        self, execution_id: str, after_seq: int, *, workspace: str | None
    ) -> AsyncGenerator[list[Event], None]:
        """Every event with seq > after_seq exactly once, in order, ending after the terminal one.

        A negative after_seq follows live only: from the execution's current last seq. An
        execution outside `workspace` is NotFound, exactly like a missing one.
        """
        follower = _Follower(self._buffer_batches)
        topic = self._topics.setdefault(execution_id, _Topic())
        # Subscribe first, then read the backlog: an event committed in between is in the
        # buffer or in the database, so nothing falls between the two.
        topic.followers.add(follower)
        try:
            execution = await self._executions.execution(
                execution_id, workspace=workspace, with_steps=False
            )
            if execution is None:
                raise NotFound(f"execution {execution_id} not found")
            last = execution.last_seq if after_seq < 0 else after_seq
            async for batch in self._read(execution_id, last):
                yield batch
                last = batch[-1].seq
                if batch[-1].is_terminal:
                    return
            # The backlog ended without a terminal event; if the row says the execution already
            # ended, its terminal event is at or before `last` (afterSeq past the end).
            execution = await self._executions.execution(
                execution_id, workspace=None, with_steps=False
            )
            if (
                execution is not None
                and execution.status.is_terminal
                and execution.last_seq <= last
            ):
                return
            # This frame idles in take() for as long as the subscription lives: keep no row
            # or backlog page alive through it.
            execution = None
            batch = []
            while True:
                item = await follower.take()
                if isinstance(item, _Reread):
                    batches: list[list[Event]] = [b async for b in self._read(execution_id, last)]
                else:
                    # Usually all of it is new: yield the shared batch itself (see EventBatch).
                    fresh = item if item[0].seq > last else [e for e in item if e.seq > last]
                    if not fresh:
                        continue
                    batches = []
                    if fresh[0].seq > last + 1:
                        # A jump: fill the gap from the database before the live events.
                        batches.extend(
                            [b async for b in self._read(execution_id, last, fresh[0].seq)]
                        )
                    batches.append(fresh)
                for batch in batches:
                    yield batch
                    last = batch[-1].seq
                    if batch[-1].is_terminal:
                        return
        finally:
            topic.followers.discard(follower)
            if not topic.followers and self._topics.get(execution_id) is topic:
                del self._topics[execution_id]

    async def _read(
        self, execution_id: str, after_seq: int, before_seq: int | None = None
    ) -> AsyncIterator[list[Event]]:
        while True:
            page = await self._events.events(
                execution_id, after_seq, before_seq=before_seq, limit=_PAGE
            )
            if not page:
                return
            for batch in _by_text_size(page):
                yield batch
            after_seq = page[-1].seq
            if len(page) < _PAGE:
                return

    def _push(self, execution_id: str, batch: EventBatch) -> None:
        topic = self._topics.get(execution_id)
        if topic is None:
            return
        topic.delivered_seq = max(topic.delivered_seq, batch[-1].seq)
        for follower in topic.followers:
            follower.offer(batch)

    async def _consume(self, bus: Bus, lag: Callable[[float], None] | None) -> None:
        """Turn bus notices from other processes into batches, one DB read per notice."""
        try:
            async for message in receive_notices(bus, lag):
                if isinstance(message, Resync):
                    self._reread_all()
                    self._restate(self._in_sync_at)
                    self._in_sync_at = utc_now()
                    continue
                self._in_sync_at = utc_now()
                self._note_remote_changes(message)
                for notice in message:
                    await self._on_notice(notice)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Without the bus, followers still make progress only if told to read the DB;
            # log loudly and keep local delivery (this process's own events) working.
            logger.exception("hub: the bus subscription failed")
            self._reread_all()
            self._restate(self._in_sync_at)
            raise

    async def _on_notice(self, notice: Notice) -> None:
        topic = self._topics.get(notice.execution_id)
        if topic is None or notice.last_seq <= topic.delivered_seq:
            return  # nobody here follows it, or this process wrote and delivered it already
        after = max(topic.delivered_seq, notice.first_seq - 1)
        try:
            events = await self._events.events(
                notice.execution_id, after, before_seq=notice.last_seq + 1, limit=_PAGE * 10
            )
        except Exception as error:
            report(logger, "hub: reading events for a notice", error)
            for follower in topic.followers:
                follower.offer(_REREAD)
            return
        if events:
            self._push(notice.execution_id, EventBatch(events))

    def _reread_all(self) -> None:
        for topic in self._topics.values():
            for follower in topic.followers:
                follower.offer(_REREAD)

    # ---- status updates for watchers ---------------------------------------------------

    def _note_local_changes(self, events: Sequence[Event]) -> None:
        usage: dict[str, Event] = {}
        for event in events:
            if event.type is EventType.USAGE:
                usage[event.execution_id] = event
        if usage:
            # As for status below: the notice of this batch is recognised when it comes back.
            for event in events:
                if event.execution_id in usage:
                    self._usage_seen.record(event.execution_id, event.seq)
            for execution_id, event in usage.items():
                self._note_usage(execution_id, event.at)
        # A change already shown is left out: a start's notice goes out in its own statement,
        # so it can come back over the bus (and be shown from there) before this call.
        changes = tuple(
            event
            for event in events
            if event.type is EventType.EXECUTION_STATUS
            and event.seq > self._seen.get(event.execution_id)
        )
        if not changes:
            return
        # The batch's last seq per changed execution is its notice's last_seq: the notice
        # this batch publishes will be recognised as seen when it comes back over the bus.
        last: dict[str, int] = {event.execution_id: 0 for event in changes}
        for event in events:
            if event.execution_id in last:
                last[event.execution_id] = max(last[event.execution_id], event.seq)
        for execution_id, seq in last.items():
            self._seen.record(execution_id, seq)
        self._enqueue(_LocalChanges(changes, min(event.at for event in changes)))

    def _note_remote_changes(self, notices: Iterable[Notice]) -> None:
        if not self._watchers:
            return
        ranges: list[tuple[str, int, int]] = []
        for notice in notices:
            if notice.usage_changed and notice.last_seq > self._usage_seen.get(notice.execution_id):
                self._usage_seen.record(notice.execution_id, notice.last_seq)
                self._note_usage(notice.execution_id, utc_now())
            if not notice.status_changed:
                continue
            after = max(self._seen.get(notice.execution_id), notice.first_seq - 1)
            if notice.last_seq <= after:
                continue  # this process wrote (and showed) it, or saw it already
            self._seen.record(notice.execution_id, notice.last_seq)
            ranges.append((notice.execution_id, after, notice.last_seq))
        if ranges:
            self._enqueue(_RemoteChanges(tuple(ranges), utc_now()))

    def _note_usage(self, execution_id: str, at: datetime) -> None:
        self._usage_due.setdefault(execution_id, at)
        self._usage_noted.set()

    async def _release_usage(self) -> None:
        """Hand the usage changes noted in each interval on as one piece of work."""
        while True:
            await self._usage_noted.wait()
            # The interval starts with its first change; the ones after it wait for its end.
            await asyncio.sleep(_USAGE_SECONDS)
            self._usage_noted.clear()
            due, self._usage_due = self._usage_due, {}
            if due and self._watchers:
                self._enqueue(_UsageChanges(tuple(due), min(due.values())))

    def _restate(self, since: datetime) -> None:
        if self._watchers:
            self._enqueue(_Refresh(since))

    def _enqueue(self, work: _Work) -> None:
        if len(self._work) >= _PENDING_WORK:
            # Changes arrive faster than their rows can be read: one refresh replaces them all.
            since = min(item.since for item in (*self._work, work))
            self._work.clear()
            work = _Refresh(since)
        self._work.append(work)
        self._work_ready.set()

    async def _publish_updates(self) -> None:
        """Read the rows of changed executions once per batch and offer them to every watcher."""
        delay = _FIRST_RETRY_SECONDS
        while True:
            while not self._work:
                self._work_ready.clear()
                await self._work_ready.wait()
            work = self._work.popleft()
            targets, since = self._targets(work)
            if not targets:
                continue
            try:
                updates = await self._updates_for(work, since)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                report(logger, "hub: reading executions for status updates", error)
                # Restate what this work would have shown once the database answers; the
                # pause keeps an outage from becoming a busy loop.
                self._enqueue(_Refresh(since))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_CAP_SECONDS)
                continue
            delay = _FIRST_RETRY_SECONDS
            restating = isinstance(work, _Refresh)
            for update in updates:
                subject = update.subject
                for watcher in targets:
                    if watcher.admits(update, subject) and watcher.offer(
                        update, restating=restating
                    ):
                        self._enqueue(_Refresh(update.at, watcher))

    def _targets(self, work: _Work) -> tuple[list[_Watcher], datetime]:
        """The watchers `work` is for, and from when it restates (for a refresh)."""
        if not isinstance(work, _Refresh):
            return list(self._watchers), work.since
        if work.watcher is not None:
            watcher = work.watcher
            if watcher not in self._watchers or watcher.refresh_since is None:
                return [], work.since  # gone, or restated by a refresh for all since
            since, watcher.refresh_since = watcher.refresh_since, None
            return [watcher], since
        since = work.since
        for watcher in self._watchers:
            if watcher.refresh_since is not None:
                since, watcher.refresh_since = min(since, watcher.refresh_since), None
        return list(self._watchers), since

    async def _updates_for(self, work: _Work, since: datetime) -> list[ExecutionUpdate]:
        if isinstance(work, _LocalChanges):
            rows = await self._history.executions_by_id(e.execution_id for e in work.events)
            return [
                ExecutionUpdate(
                    rows[event.execution_id],
                    ExecutionStatus(event.data["status"]),
                    event.at,
                    UpdateKind.CHANGED,
                )
                for event in work.events
                if event.execution_id in rows
            ]
        if isinstance(work, _UsageChanges):
            rows = await self._history.executions_by_id(work.execution_ids)
            now = utc_now()
            # An ended execution's last status update read its row after its last usage was
            # stored (the end is its last event): that update carries the final totals.
            return [
                ExecutionUpdate(row, row.status, now, UpdateKind.CHANGED)
                for row in rows.values()
                if not row.status.is_terminal
            ]
        if isinstance(work, _RemoteChanges):
            changes = await self._history.status_changes(work.ranges)
            return [
                ExecutionUpdate(
                    execution, ExecutionStatus(event.data["status"]), event.at, UpdateKind.CHANGED
                )
                for event, execution in changes
            ]
        now = utc_now()
        live = await self._history.live_executions(since - _REFRESH_MARGIN, _REFRESH_LIMIT)
        if len(live) >= _REFRESH_LIMIT:
            logger.warning("hub: a refresh restated only the newest %d executions", len(live))
        # Oldest first, like changes arrive.
        return [ExecutionUpdate(row, row.status, now, UpdateKind.CURRENT) for row in live[::-1]]
