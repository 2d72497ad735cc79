"""Send groups: live batches sent to the subscribers of one document by the few that follow.

Even with a batch's completion and JSON shared (sharing.py), every subscriber of a live execution
had its own task woken per batch: the hub's follower, a stack of async generators (ours,
graphql-core's, Strawberry's), then a send through Litestar and uvicorn. Profiled with 1000
subscribers (benchmark P2), most of that server CPU per delivery was not the write itself.

So the subscriptions of one execution asking with one document field form a *send group*, and
they share the work of sending. Members that follow the hub and whose batches are memoised for
their document are the group's *senders*. A sender that is caught up (the hub has handed out
nothing past its last seq) *parks* when another sender remains: its resolver waits on one future
and it leaves the hub. Each sender, once it has sent a batch the hub handed out, writes that
batch's memoised message to every parked member, in one loop.

Exactly once, in order: a parked member is sent a batch only if it starts right after the last
seq that member was sent. Otherwise it is *released*: it follows the hub again from its last seq,
reading what it missed from the database like any late joiner. Parked members are also released
when the last sender leaves (one of them takes over), when a send to them would have to wait for
a slow client (they finish it in their own task, so no member ever waits for another's socket),
and when no sender has sent anything for `PATIENCE` while the hub holds newer events (a sender
stuck behind its own slow client). A member whose client is behind (events/slow_clients.py)
sends for nobody: it is no sender, so the others never park relying on it, and a sender that
falls behind hands its parked members over at once (the longest parked follows the hub and
sends). Members sent their execution's terminal batch are ended in the background, a slice at a
time: ending a subscription costs more than sending it a batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from graphql import FieldNode
from litestar.exceptions import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected

from runwire.domain.models import Event
from runwire.events.hub import EventBatch
from runwire.events.slow_clients import SlowClients, Watched
from runwire.graphql.fanout.compat.litestar import PendingSend, finish_send, send_without_waiting
from runwire.graphql.fanout.compat.strawberry import operation_is_open
from runwire.graphql.fanout.sharing import (
    NEXT_MESSAGE_TAIL,
    SharedCompletion,
    SharedSource,
    next_message_head,
)
from runwire.graphql.fanout.sockets import SubscriptionSocket

PATIENCE = 0.5
"""Seconds parked members wait for a sender while newer events exist, before following."""

FINISH_SLICE = 16
FINISH_PAUSE = 0.005
"""Subscriptions sent their terminal batch are ended FINISH_SLICE at a time, this far apart."""


@dataclass(frozen=True, slots=True)
class _Release:
    """Why a parked member resumes: finished (its terminal batch was sent), or to follow again."""

    finished: bool = False
    # A send a sender started that has to wait for the member's client: the member finishes it.
    pending: PendingSend | None = None
    error: Exception | None = None


_FOLLOW = _Release()
_FINISHED = _Release(finished=True)


class Seat:
    """One subscription in its send group: following the hub (a sender once memoised), or parked."""

    __slots__ = ("_group", "_waiter", "last_seq", "prefix", "sending", "socket", "watched")

    def __init__(
        self, group: _SendGroup, socket: SubscriptionSocket, watched: Watched | None
    ) -> None:
        self._group = group
        self.socket = socket
        self.watched = watched
        # The `next` message up to the data's value: only the batch's JSON differs per batch.
        self.prefix = next_message_head(socket.operation_id, socket.response_key)
        self._waiter: asyncio.Future[_Release] | None = None
        self.last_seq = -1
        self.sending = False

    def delivered(self, batch: list[Event], payload: SharedSource) -> None:
        """This subscription sent `batch`: send it to the parked members right behind it."""
        self.last_seq = batch[-1].seq
        # Only a document whose batches are memoised can be sent for others (a selection using
        # variables, or one that completed with errors, never is); only a batch the hub handed
        # out is sent on, since parked members wait for the hub's batches, not database pages.
        shared = payload.completion(self.socket.node)
        # One whose own client is behind would make its parked members wait on that client.
        sending = shared is not None and not self.behind()
        if sending != self.sending:
            self.sending = sending
            self._group.set_sending(self, sending)
        if shared is not None and isinstance(batch, EventBatch) and self._group.parked:
            self._group.send_to_parked(batch, shared)

    def may_park(self, hub_seq: int) -> bool:
        """Whether another sender will send everything after this one's last seq.

        The hub has handed out nothing past it (so its next batch for this execution starts
        right after, or overlaps, and overlaps are caught when sent on), and another member
        follows the hub to send.
        """
        return (
            self.sending
            and hub_seq <= self.last_seq
            and any(s is not self and not s.behind() for s in self._group.senders)
        )

    def behind(self) -> bool:
        """Whether this subscription's client is not reading what it is sent."""
        return self.watched is not None and self.watched.behind()

    async def park(self) -> bool:
        """Wait while senders send this subscription's batches; True once the terminal was sent."""
        group = self._group
        self._waiter = asyncio.get_running_loop().create_future()
        group.set_sending(self, False)
        group.parked[self] = None
        group.watch()
        try:
            release = await self._waiter
        finally:
            group.parked.pop(self, None)
            self._waiter = None
            self.sending = False
        try:
            if release.pending is not None:
                await finish_send(release.pending)
            if release.error is not None:
                raise release.error
        except WebSocketDisconnect as error:
            raise WebSocketDisconnected from error  # as Strawberry's own sends raise it
        return release.finished

    def release(self, release: _Release) -> None:
        waiter = self._waiter
        self._group.parked.pop(self, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(release)


class _SendGroup:
    """The subscriptions of one execution that share one document field."""

    def __init__(
        self, node: FieldNode, hub_seq: Callable[[], int], finish: Callable[[Seat], None]
    ) -> None:
        self.node = node
        self.hub_seq = hub_seq
        self.finish = finish
        self.members = 0
        self.senders: set[Seat] = set()
        self.parked: dict[Seat, None] = {}  # in the order they parked
        self.sent_at = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    def set_sending(self, seat: Seat, sending: bool) -> None:
        if sending:
            self.senders.add(seat)
            return
        self.senders.discard(seat)
        if self.parked and all(sender.behind() for sender in self.senders):
            # Nobody left to send (or only members whose clients are not reading): the
            # longest parked follows the hub again, and sends.
            next(iter(self.parked)).release(_FOLLOW)

    def send_to_parked(self, batch: list[Event], shared: SharedCompletion) -> None:
        self.sent_at = asyncio.get_running_loop().time()
        body = shared.json()
        first, last, finished = batch[0].seq, batch[-1].seq, batch[-1].is_terminal
        for peer in list(self.parked):
            if peer.last_seq >= last:
                continue  # sent already, by a sender further ahead
            if peer.last_seq != first - 1:
                peer.release(_FOLLOW)  # it would miss or repeat events: read them itself
                continue
            if not operation_is_open(peer.socket.operation):
                peer.release(_FOLLOW)  # completed by its client: its task is being cancelled
                continue
            # Not awaited: the send completes at once unless the client's buffer is full, and
            # then the peer, in its own task, waits for it, not this sender.
            try:
                pending = send_without_waiting(
                    peer.socket.websocket, peer.prefix + body + NEXT_MESSAGE_TAIL
                )
            except Exception as error:  # the peer's failure: raised in its own task, not here
                peer.release(_Release(error=error))
                continue
            peer.last_seq = last
            if pending is not None:
                peer.release(_Release(pending=pending))
            elif finished:
                self.parked.pop(peer, None)
                self.finish(peer)

    def watch(self) -> None:
        """Check every PATIENCE that senders keep parked members up to date."""
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(PATIENCE, self._check)

    def _check(self) -> None:
        self._watchdog = None
        if not self.parked:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self.sent_at >= PATIENCE:
            hub_seq = self.hub_seq()
            for peer in list(self.parked):
                if peer.last_seq < hub_seq:
                    peer.release(_FOLLOW)
        self.watch()

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


class SendGroups:
    """This process's groups of subscriptions, by execution and document field."""

    def __init__(self, slow_clients: SlowClients) -> None:
        self._slow_clients = slow_clients
        self._groups: dict[tuple[str, int], _SendGroup] = {}
        self._finishing: deque[Seat] = deque()
        self._finisher: asyncio.Task[None] | None = None

    def _finish(self, seat: Seat) -> None:
        """End a parked subscription whose terminal batch was sent, soon (see _finish_all)."""
        self._finishing.append(seat)
        if self._finisher is None or self._finisher.done():
            self._finisher = asyncio.get_running_loop().create_task(
                self._finish_all(), name="runwire-send-group-finisher"
            )

    async def _finish_all(self) -> None:
        """Release finished subscriptions a slice at a time, pausing between slices.

        Ending one (its task resuming, Strawberry's `complete`, the teardown) costs more than
        sending it a batch. With a thousand ending together, other executions' batches arriving
        meanwhile waited behind all of them (the terminal events at the end of benchmark P2
        came late). They have their terminal event already; their `complete` can come a little
        later.
        """
        while self._finishing:
            for _ in range(min(FINISH_SLICE, len(self._finishing))):
                self._finishing.popleft().release(_FINISHED)
            await asyncio.sleep(FINISH_PAUSE)

    @property
    def parked_count(self) -> int:
        """Subscriptions whose batches senders send (they are not the hub's followers then)."""
        return sum(len(group.parked) for group in self._groups.values())

    @contextmanager
    def seat(
        self, socket: SubscriptionSocket | None, execution_id: str, hub_seq: Callable[[], int]
    ) -> Iterator[Seat | None]:
        """A seat in the subscription's send group for the block; None if it cannot have one."""
        if socket is None:
            yield None
            return
        key = (execution_id, id(socket.node))
        group = self._groups.get(key)
        if group is None or group.node is not socket.node:
            group = self._groups[key] = _SendGroup(socket.node, hub_seq, self._finish)
        group.members += 1
        with self._slow_clients.websocket(socket.websocket.scope) as watched:
            seat = Seat(group, socket, watched)
            try:
                yield seat
            finally:
                group.parked.pop(seat, None)
                group.set_sending(seat, False)
                group.members -= 1
                if not group.members and self._groups.get(key) is group:
                    group.close()
                    del self._groups[key]
