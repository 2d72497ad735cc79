"""Relays send parked peers each live batch exactly once, in order, or release them to follow.

The sockets here are stand-ins for Litestar's WebSocket and Strawberry's operation (what a relay
touches of them: `send_data`, the operation's id and whether it is still open); the groups, seats
and batches are the real ones.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from graphql import FieldNode, NameNode
from litestar.exceptions import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected

from runwire.domain.models import Event, EventType
from runwire.events.hub import EventBatch
from runwire.graphql import relay
from runwire.graphql.relay import Relays, Seat
from runwire.graphql.sharing import SharedCompletion, SharedSource, SubscriptionSocket

NODE = FieldNode(name=NameNode(value="executionEvents"))
EXECUTION = "exec-1"


class Socket:
    """A client socket as a relay sees it: sends land in `sent`, or wait while `full` is clear."""

    def __init__(self) -> None:
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
    """What a relay reads of Strawberry's operation: its id, and whether it is still open."""

    def __init__(self, operation_id: str) -> None:
        self.id = operation_id
        self.completed = False
        self.handler = self
        self.operations = {operation_id: self}


def socket_of(operation_id: str, ws: Socket) -> SubscriptionSocket:
    return SubscriptionSocket(Operation(operation_id), ws, NODE, "executionEvents")  # type: ignore[arg-type]


def live_batch(first: int, last: int, *, terminal: bool = False) -> tuple[EventBatch, SharedSource]:
    """A batch the hub handed out, and its payload with the completion a relay sends."""
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


class HubSeq:
    """The hub's highest delivered seq of the execution, which the group asks for."""

    seq = 0


@pytest.fixture
def hub() -> HubSeq:
    return HubSeq()


@pytest.fixture
def relays() -> Relays:
    return Relays()


async def seated(relays: Relays, hub: HubSeq, name: str, ws: Socket, stack: list[Any]) -> Seat:
    manager = relays.seat(socket_of(name, ws), EXECUTION, lambda: hub.seq)
    stack.append(manager)
    seat = manager.__enter__()
    assert seat is not None
    return seat


def deliver(seat: Seat, hub: HubSeq, first: int, last: int, *, terminal: bool = False) -> None:
    """The seat sent this live batch itself (as the resolver does before it relays)."""
    batch, payload = live_batch(first, last, terminal=terminal)
    hub.seq = max(hub.seq, last)
    seat.delivered(batch, payload)


async def test_parked_peers_get_each_batch_once_in_order_then_finish(
    relays: Relays, hub: HubSeq
) -> None:
    stack: list[Any] = []
    relay_ws, peer_ws = Socket(), Socket()
    lead = await seated(relays, hub, "lead", relay_ws, stack)
    peer = await seated(relays, hub, "peer", peer_ws, stack)
    deliver(lead, hub, 1, 3)
    deliver(peer, hub, 1, 3)
    assert peer.may_park(hub.seq)
    parked = asyncio.create_task(peer.park())
    await asyncio.sleep(0)
    assert relays.parked_count == 1

    deliver(lead, hub, 1, 3)  # a relay behind the peer sends nothing again
    deliver(lead, hub, 4, 5)
    deliver(lead, hub, 6, 8, terminal=True)
    assert await parked is True
    assert peer_ws.seqs() == [4, 5, 6, 7, 8]
    assert {message["id"] for message in peer_ws.sent} == {"peer"}
    assert peer.last_seq == 8


async def test_a_peer_that_would_miss_events_is_released_to_read_them(
    relays: Relays, hub: HubSeq
) -> None:
    stack: list[Any] = []
    lead = await seated(relays, hub, "lead", Socket(), stack)
    peer_ws = Socket()
    peer = await seated(relays, hub, "peer", peer_ws, stack)
    deliver(lead, hub, 1, 3)
    deliver(peer, hub, 1, 3)
    parked = asyncio.create_task(peer.park())
    await asyncio.sleep(0)
    deliver(lead, hub, 6, 7)  # 4..5 went by some other way: the peer must read them itself
    assert await parked is False
    assert peer_ws.sent == []
    assert peer.last_seq == 3


async def test_a_slow_peer_finishes_its_send_in_its_own_task(relays: Relays, hub: HubSeq) -> None:
    stack: list[Any] = []
    lead = await seated(relays, hub, "lead", Socket(), stack)
    slow_ws, quick_ws = Socket(), Socket()
    slow = await seated(relays, hub, "slow", slow_ws, stack)
    quick = await seated(relays, hub, "quick", quick_ws, stack)
    for seat in (lead, slow, quick):
        deliver(seat, hub, 1, 1)
    slow_parked = asyncio.create_task(slow.park())
    quick_parked = asyncio.create_task(quick.park())
    await asyncio.sleep(0)
    slow_ws.room.clear()

    deliver(lead, hub, 2, 3)  # returns at once: the relay never waits for a client
    assert quick_ws.seqs() == [2, 3]
    assert slow_ws.seqs() == []
    await asyncio.sleep(0.01)
    assert not slow_parked.done()  # its own task waits for room, nobody else does
    slow_ws.room.set()
    assert await slow_parked is False
    assert slow_ws.seqs() == [2, 3]
    assert slow.last_seq == 3
    deliver(lead, hub, 4, 4, terminal=True)
    assert await quick_parked is True
    assert quick_ws.seqs() == [2, 3, 4]


async def test_a_peer_gone_away_ends_with_strawberrys_disconnect(
    relays: Relays, hub: HubSeq
) -> None:
    stack: list[Any] = []
    lead = await seated(relays, hub, "lead", Socket(), stack)
    gone_ws = Socket()
    gone = await seated(relays, hub, "gone", gone_ws, stack)
    deliver(lead, hub, 1, 1)
    deliver(gone, hub, 1, 1)
    parked = asyncio.create_task(gone.park())
    await asyncio.sleep(0)
    gone_ws.gone = True
    deliver(lead, hub, 2, 2)
    with pytest.raises(WebSocketDisconnected):
        await parked


async def test_when_the_last_relay_leaves_a_parked_peer_takes_over(
    relays: Relays, hub: HubSeq
) -> None:
    stack: list[Any] = []
    lead = await seated(relays, hub, "lead", Socket(), stack)
    first_ws, second_ws = Socket(), Socket()
    first = await seated(relays, hub, "first", first_ws, stack)
    second = await seated(relays, hub, "second", second_ws, stack)
    for seat in (lead, first, second):
        deliver(seat, hub, 1, 2)
    first_parked = asyncio.create_task(first.park())
    await asyncio.sleep(0)
    assert second.may_park(hub.seq)
    second_parked = asyncio.create_task(second.park())
    await asyncio.sleep(0)

    stack[0].__exit__(None, None, None)  # the relay's subscription ends
    assert await first_parked is False  # the longest parked follows the hub again
    assert not second_parked.done()
    deliver(first, hub, 3, 4)  # ... and relays to the other
    assert second_ws.seqs() == [3, 4]
    second_parked.cancel()


async def test_peers_do_not_wait_for_a_relay_that_stopped_sending(
    relays: Relays, hub: HubSeq, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay, "PATIENCE", 0.05)
    stack: list[Any] = []
    lead = await seated(relays, hub, "lead", Socket(), stack)
    peer = await seated(relays, hub, "peer", Socket(), stack)
    deliver(lead, hub, 1, 1)
    deliver(peer, hub, 1, 1)
    parked = asyncio.create_task(peer.park())
    await asyncio.sleep(0.12)
    assert not parked.done()  # nothing newer than the peer's last seq: nothing to wait for
    hub.seq = 2  # the hub has seq 2, but the relay is stuck behind its own client
    async with asyncio.timeout(1):
        assert await parked is False
    assert peer.last_seq == 1


async def test_a_batch_not_completed_for_sharing_releases_the_peers(
    relays: Relays, hub: HubSeq
) -> None:
    stack: list[Any] = []
    lead = await seated(relays, hub, "lead", Socket(), stack)
    peer = await seated(relays, hub, "peer", Socket(), stack)
    deliver(lead, hub, 1, 1)
    deliver(peer, hub, 1, 1)
    parked = asyncio.create_task(peer.park())
    await asyncio.sleep(0)
    batch, _ = live_batch(2, 2)
    lead.delivered(batch, SharedSource())  # completed with an error: nothing memoised
    # The relay no longer relays; with none left, the peer follows the hub again.
    assert await parked is False
    assert peer.last_seq == 1


async def test_a_subscriber_caught_up_from_the_database_parks_before_any_live_batch(
    relays: Relays, hub: HubSeq
) -> None:
    stack: list[Any] = []
    lead = await seated(relays, hub, "lead", Socket(), stack)
    joiner_ws = Socket()
    joiner = await seated(relays, hub, "joiner", joiner_ws, stack)
    for seat in (lead, joiner):
        page, payload = live_batch(1, 2)
        seat.delivered(list(page), payload)  # its backlog: a page read from the database
    assert hub.seq == 0  # the hub has handed out nothing yet
    assert joiner.may_park(hub.seq)
    parked = asyncio.create_task(joiner.park())
    await asyncio.sleep(0)
    assert not lead.may_park(hub.seq)  # the last relay never parks
    deliver(lead, hub, 3, 4, terminal=True)
    assert await parked is True
    assert joiner_ws.seqs() == [3, 4]


async def test_a_database_page_is_not_relayed(relays: Relays, hub: HubSeq) -> None:
    stack: list[Any] = []
    lead = await seated(relays, hub, "lead", Socket(), stack)
    peer_ws = Socket()
    peer = await seated(relays, hub, "peer", peer_ws, stack)
    deliver(lead, hub, 1, 1)
    deliver(peer, hub, 1, 1)
    parked = asyncio.create_task(peer.park())
    await asyncio.sleep(0)
    page, payload = live_batch(2, 3)
    lead.delivered(list(page), payload)  # a relay catching up reads pages: peers wait for the hub
    assert peer_ws.sent == []
    deliver(lead, hub, 4, 4)  # ... and a hub batch past what the peer has releases it to read
    assert await parked is False
    assert peer.last_seq == 1
