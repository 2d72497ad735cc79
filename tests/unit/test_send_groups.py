"""Senders send parked members each live batch exactly once, in order, or release them to follow.

The sockets here are stand-ins for Litestar's WebSocket and Strawberry's operation (what a sender
touches of them: `send_data`, the operation's id and whether it is still open); the groups, seats
and batches are the real ones.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from graphql import FieldNode, NameNode
from litestar.exceptions import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected

from runwire.domain.models import Event, EventType
from runwire.events.hub import EventBatch
from runwire.events.slow_clients import SlowClients, Watched
from runwire.graphql.fanout import send_groups
from runwire.graphql.fanout.send_groups import Seat, SendGroups
from runwire.graphql.fanout.sharing import SharedCompletion, SharedSource
from runwire.graphql.fanout.sockets import SubscriptionSocket

NODE = FieldNode(name=NameNode(value="executionEvents"))
EXECUTION = "exec-1"


class Socket:
    """A client socket as a sender sees it: sends land in `sent`, or wait while `full` is clear."""

    def __init__(self) -> None:
        # No ASGI server's own send in it: not watched for slowness (slow_clients.py).
        self.scope: dict[str, Any] = {}
        self.sent: list[dict[str, Any]] = []
        self.room = asyncio.Event()
        self.room.set()
        self.gone = False

    async def send_data(self, text: str) -> None:
        await self.room.wait()
        if self.gone:
            raise WebSocketDisconnect(detail="gone")
        self.sent.append(json.loads(text))

    def seqs(self) -> list[int]:
        return [
            event["seq"]
            for message in self.sent
            for event in message["payload"]["data"]["executionEvents"]["events"]
        ]


class Operation:
    """What a sender reads of Strawberry's operation: its id, and whether it is still open."""

    def __init__(self, operation_id: str) -> None:
        self.id = operation_id
        self.completed = False
        self.handler = self
        self.operations = {operation_id: self}


def socket_of(operation_id: str, ws: Socket) -> SubscriptionSocket:
    operation: Any = Operation(operation_id)
    client: Any = ws
    return SubscriptionSocket(operation, operation_id, client, NODE, "executionEvents")


def live_batch(first: int, last: int, *, terminal: bool = False) -> tuple[EventBatch, SharedSource]:
    """A batch the hub handed out, and its payload with the completion a sender sends."""
    at = datetime(2026, 11, 21, tzinfo=UTC)
    events = [
        Event(EXECUTION, seq, at, EventType.OUTPUT, {"text": f"{seq}"})
        for seq in range(first, last + 1)
    ]
    if terminal:
        events[-1] = Event(EXECUTION, last, at, EventType.EXECUTION_STATUS, {"status": "SUCCEEDED"})
    payload = SharedSource()
    completed = SharedCompletion({"events": [{"seq": event.seq} for event in events]})
    payload.completions[id(NODE)] = (NODE, completed)
    return EventBatch(events), payload


class Members:
    """Subscriptions seated in one group as the resolver seats them, and the hub's last seq."""

    def __init__(self) -> None:
        self.groups = SendGroups(SlowClients(stall_seconds=10))
        self.hub_seq = 0
        self._exits: dict[str, ExitStack] = {}

    def seat(self, name: str, ws: Socket | None = None) -> Seat:
        exits = self._exits[name] = ExitStack()
        seat = exits.enter_context(
            self.groups.seat(socket_of(name, ws or Socket()), EXECUTION, lambda: self.hub_seq)
        )
        assert seat is not None
        return seat

    def leave(self, name: str) -> None:
        """The subscription `name` ends (its resolver leaves the seat's block)."""
        self._exits.pop(name).close()

    def leave_all(self) -> None:
        for name in list(self._exits):
            self.leave(name)

    def deliver(self, seat: Seat, first: int, last: int, *, terminal: bool = False) -> None:
        """The seat sent this hub batch itself (as the resolver does before it sends to others)."""
        batch, payload = live_batch(first, last, terminal=terminal)
        self.hub_seq = max(self.hub_seq, last)
        seat.delivered(batch, payload)

    async def parked(self, *seats: Seat, through: int) -> list[asyncio.Task[bool]]:
        """`seats` after each sent the hub batch 1..through, each parked but the first."""
        for seat in seats:
            self.deliver(seat, 1, through)
        tasks = []
        for seat in seats[1:]:
            assert seat.may_park(self.hub_seq)
            tasks.append(asyncio.create_task(seat.park()))
            await asyncio.sleep(0)
        return tasks


@pytest.fixture
def group() -> Iterator[Members]:
    members = Members()
    yield members
    members.leave_all()


async def test_parked_peers_get_each_batch_once_in_order_then_finish(group: Members) -> None:
    peer_ws = Socket()
    lead, peer = group.seat("lead"), group.seat("peer", peer_ws)
    (parked,) = await group.parked(lead, peer, through=3)
    assert group.groups.parked_count == 1

    group.deliver(lead, 1, 3)  # a sender behind the peer sends nothing again
    group.deliver(lead, 4, 5)
    group.deliver(lead, 6, 8, terminal=True)
    assert await parked is True
    assert peer_ws.seqs() == [4, 5, 6, 7, 8]
    assert {message["id"] for message in peer_ws.sent} == {"peer"}
    assert peer.last_seq == 8


async def test_a_peer_that_would_miss_events_is_released_to_read_them(group: Members) -> None:
    peer_ws = Socket()
    lead, peer = group.seat("lead"), group.seat("peer", peer_ws)
    (parked,) = await group.parked(lead, peer, through=3)
    group.deliver(lead, 6, 7)  # 4..5 went by some other way: the peer must read them itself
    assert await parked is False
    assert peer_ws.sent == []
    assert peer.last_seq == 3


async def test_a_slow_peer_finishes_its_send_in_its_own_task(group: Members) -> None:
    slow_ws, quick_ws = Socket(), Socket()
    lead, slow, quick = (
        group.seat("lead"),
        group.seat("slow", slow_ws),
        group.seat("quick", quick_ws),
    )
    slow_parked, quick_parked = await group.parked(lead, slow, quick, through=1)
    slow_ws.room.clear()

    group.deliver(lead, 2, 3)  # returns at once: the sender never waits for a client
    assert quick_ws.seqs() == [2, 3]
    assert slow_ws.seqs() == []
    await asyncio.sleep(0.01)
    assert not slow_parked.done()  # its own task waits for room, nobody else does
    slow_ws.room.set()
    assert await slow_parked is False
    assert slow_ws.seqs() == [2, 3]
    assert slow.last_seq == 3
    group.deliver(lead, 4, 4, terminal=True)
    assert await quick_parked is True
    assert quick_ws.seqs() == [2, 3, 4]


async def test_a_peer_gone_away_ends_with_strawberrys_disconnect(group: Members) -> None:
    gone_ws = Socket()
    lead = group.seat("lead")
    (parked,) = await group.parked(lead, group.seat("gone", gone_ws), through=1)
    gone_ws.gone = True
    group.deliver(lead, 2, 2)
    with pytest.raises(WebSocketDisconnected):
        await parked


async def test_when_the_last_sender_leaves_a_parked_peer_takes_over(group: Members) -> None:
    second_ws = Socket()
    first = group.seat("first")
    first_parked, second_parked = await group.parked(
        group.seat("lead"), first, group.seat("second", second_ws), through=2
    )
    group.leave("lead")
    assert await first_parked is False  # the longest parked follows the hub again
    assert not second_parked.done()
    group.deliver(first, 3, 4)  # ... and sends to the other
    assert second_ws.seqs() == [3, 4]
    second_parked.cancel()


async def test_peers_do_not_wait_for_a_sender_that_stopped_sending(
    group: Members, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(send_groups, "PATIENCE", 0.05)
    peer = group.seat("peer")
    (parked,) = await group.parked(group.seat("lead"), peer, through=1)
    await asyncio.sleep(0.12)
    assert not parked.done()  # nothing newer than the peer's last seq: nothing to wait for
    group.hub_seq = 2  # the hub has seq 2, but the sender is stuck behind its own client
    async with asyncio.timeout(1):
        assert await parked is False
    assert peer.last_seq == 1


async def test_a_batch_not_completed_for_sharing_releases_the_peers(group: Members) -> None:
    lead, peer = group.seat("lead"), group.seat("peer")
    (parked,) = await group.parked(lead, peer, through=1)
    batch, _ = live_batch(2, 2)
    lead.delivered(batch, SharedSource())  # completed with an error: nothing memoised
    # The sender no longer sends; with none left, the peer follows the hub again.
    assert await parked is False
    assert peer.last_seq == 1


async def test_a_subscriber_caught_up_from_the_database_parks_before_any_live_batch(
    group: Members,
) -> None:
    joiner_ws = Socket()
    lead, joiner = group.seat("lead"), group.seat("joiner", joiner_ws)
    for seat in (lead, joiner):
        page, payload = live_batch(1, 2)
        seat.delivered(list(page), payload)  # its backlog: a page read from the database
    assert group.hub_seq == 0  # the hub has handed out nothing yet
    assert joiner.may_park(group.hub_seq)
    parked = asyncio.create_task(joiner.park())
    await asyncio.sleep(0)
    assert not lead.may_park(group.hub_seq)  # the last sender never parks
    group.deliver(lead, 3, 4, terminal=True)
    assert await parked is True
    assert joiner_ws.seqs() == [3, 4]


async def test_a_database_page_is_not_sent_to_parked_peers(group: Members) -> None:
    peer_ws = Socket()
    lead, peer = group.seat("lead"), group.seat("peer", peer_ws)
    (parked,) = await group.parked(lead, peer, through=1)
    page, payload = live_batch(2, 3)
    lead.delivered(list(page), payload)  # a sender catching up reads pages: peers wait for the hub
    assert peer_ws.sent == []
    group.deliver(lead, 4, 4)  # ... and a hub batch past what the peer has releases it to read
    assert await parked is False
    assert peer.last_seq == 1


@asynccontextmanager
async def unread_transport() -> AsyncIterator[Any]:
    """A real socket transport whose peer reads nothing, written past its high-water mark."""
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol, sock=ours)
    try:
        transport.write(b"x" * (16 << 20))  # more than the kernel's buffers take
        yield transport
    finally:
        transport.abort()
        theirs.close()


async def test_a_member_whose_client_is_behind_is_no_sender_for_the_others(
    group: Members,
) -> None:
    stuck, lead, peer = group.seat("stuck"), group.seat("lead"), group.seat("peer")
    async with unread_transport() as transport:
        stuck.watched = Watched(transport, lambda: None)
        assert stuck.behind()
        for seat in (stuck, lead, peer):
            group.deliver(seat, 1, 3)
        # Counting the stuck one, lead would park too and leave the peer waiting on a client
        # that reads nothing.
        assert peer.may_park(group.hub_seq)
        parked = asyncio.create_task(peer.park())
        await asyncio.sleep(0)
        assert not lead.may_park(group.hub_seq)
        group.deliver(lead, 4, 4, terminal=True)
        assert await parked is True


async def test_a_sender_that_falls_behind_hands_its_parked_members_over(group: Members) -> None:
    lead, peer = group.seat("lead"), group.seat("peer")
    (parked,) = await group.parked(lead, peer, through=3)
    async with unread_transport() as transport:
        lead.watched = Watched(transport, lambda: None)
        group.deliver(lead, 4, 5)  # its write of these left its client behind
        # Released at once to follow the hub and send, not after PATIENCE.
        assert await asyncio.wait_for(parked, 0.1) is False
