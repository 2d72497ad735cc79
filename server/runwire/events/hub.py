"""In-process fan-out: one bus subscription feeds every local follower through bounded buffers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field

from runwire.db.repository import Repository
from runwire.domain.errors import NotFound
from runwire.domain.models import Event
from runwire.events.bus import Bus, Notice, Resync

logger = logging.getLogger(__name__)

_PAGE = 1000


class _Reread:
    """Marker in a follower's buffer: live events may be missing, read the database."""


_REREAD = _Reread()


@dataclass(eq=False, slots=True)
class _Follower:
    """One local subscriber's bounded buffer of event batches."""

    capacity: int
    batches: deque[list[Event] | _Reread] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, item: list[Event] | _Reread) -> None:
        if len(self.batches) >= self.capacity:
            # Too slow to keep up live: drop what is buffered and let the follower read the
            # database from its last seq instead. Memory stays bounded; nothing is lost.
            self.batches.clear()
            item = _REREAD
        self.batches.append(item)
        self.ready.set()

    async def take(self) -> list[Event] | _Reread:
        while not self.batches:
            self.ready.clear()
            await self.ready.wait()
        return self.batches.popleft()


@dataclass(slots=True)
class _Topic:
    """The local followers of one execution and the highest seq handed to them."""

    followers: set[_Follower] = field(default_factory=set)
    delivered_seq: int = 0


class Hub:
    """Routes persisted events by execution id to local followers."""

    def __init__(self, repository: Repository, buffer_batches: int) -> None:
        self._repository = repository
        self._buffer_batches = buffer_batches
        self._topics: dict[str, _Topic] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, repository: Repository, bus: Bus, buffer_batches: int
    ) -> AsyncIterator[Hub]:
        """Consume the process's bus subscription for the block."""
        hub = cls(repository, buffer_batches)
        task = asyncio.create_task(hub._consume(bus), name="runwire-hub")
        try:
            yield hub
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def follower_count(self) -> int:
        return sum(len(topic.followers) for topic in self._topics.values())

    def deliver(self, events: Sequence[Event]) -> None:
        """Hand freshly committed events of this process to local followers (no DB read)."""
        by_execution: dict[str, list[Event]] = {}
        for event in events:
            if event.execution_id in self._topics:
                by_execution.setdefault(event.execution_id, []).append(event)
        for execution_id, batch in by_execution.items():
            self._push(execution_id, batch)

    async def follow(self, execution_id: str, after_seq: int) -> AsyncGenerator[list[Event], None]:
        """Every event with seq > after_seq exactly once, in order, ending after the terminal one.

        A negative after_seq follows live only: from the execution's current last seq.
        """
        follower = _Follower(self._buffer_batches)
        topic = self._topics.setdefault(execution_id, _Topic())
        # Subscribe first, then read the backlog: an event committed in between is in the
        # buffer or in the database, so nothing falls between the two.
        topic.followers.add(follower)
        try:
            execution = await self._repository.execution(execution_id, with_steps=False)
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
            execution = await self._repository.execution(execution_id, with_steps=False)
            if (
                execution is not None
                and execution.status.is_terminal
                and execution.last_seq <= last
            ):
                return
            while True:
                item = await follower.take()
                if isinstance(item, _Reread):
                    batches: list[list[Event]] = [b async for b in self._read(execution_id, last)]
                else:
                    fresh = [event for event in item if event.seq > last]
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
            page = await self._repository.events(
                execution_id, after_seq, before_seq=before_seq, limit=_PAGE
            )
            if not page:
                return
            yield page
            after_seq = page[-1].seq
            if len(page) < _PAGE:
                return

    def _push(self, execution_id: str, batch: list[Event]) -> None:
        topic = self._topics.get(execution_id)
        if topic is None:
            return
        topic.delivered_seq = max(topic.delivered_seq, batch[-1].seq)
        for follower in topic.followers:
            follower.offer(batch)

    async def _consume(self, bus: Bus) -> None:
        """Turn bus notices from other processes into batches, one DB read per notice."""
        try:
            async for message in bus.receive():
                if isinstance(message, Resync):
                    self._reread_all()
                    continue
                for notice in message:
                    await self._on_notice(notice)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Without the bus, followers still make progress only if told to read the DB;
            # log loudly and keep local delivery (this process's own events) working.
            logger.exception("hub: the bus subscription failed")
            self._reread_all()
            raise

    async def _on_notice(self, notice: Notice) -> None:
        topic = self._topics.get(notice.execution_id)
        if topic is None or notice.last_seq <= topic.delivered_seq:
            return  # nobody here follows it, or this process wrote and delivered it already
        after = max(topic.delivered_seq, notice.first_seq - 1)
        try:
            events = await self._repository.events(
                notice.execution_id, after, before_seq=notice.last_seq + 1, limit=_PAGE * 10
            )
        except Exception:
            logger.exception("hub: reading events for a notice failed")
            for follower in topic.followers:
                follower.offer(_REREAD)
            return
        if events:
            self._push(notice.execution_id, events)

    def _reread_all(self) -> None:
        for topic in self._topics.values():
            for follower in topic.followers:
                follower.offer(_REREAD)
