"""broadcaster as the bus uses it (events/compat/broadcaster.py): subscriptions, the listener."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from broadcaster import Broadcast, Event
from tests.support.contract import Contract

from runwire.events.bus_backends import MemoryBackend
from runwire.events.compat.broadcaster import Subscriber, Unsubscribed, listener_task

BROADCASTER = Contract("broadcaster", "broadcaster", place="server/runwire/events/compat")


def _backend() -> MemoryBackend:
    return MemoryBackend(f"memory://contract-{secrets.token_hex(4)}")


async def test_subscribe_yields_a_subscriber_that_ends_with_unsubscribed() -> None:
    with BROADCASTER.holds(
        "Broadcast.subscribe() yields broadcaster._base.Subscriber, whose get() returns the"
        " channel's events and raises broadcaster._base.Unsubscribed once the block is left"
    ):
        async with asyncio.timeout(5), Broadcast(backend=_backend()) as broadcast:
            async with broadcast.subscribe("c") as subscriber:
                assert isinstance(subscriber, Subscriber)
                await broadcast.publish("c", "hello")
                event = await subscriber.get()
                assert (event.channel, event.message) == ("c", "hello")
            with pytest.raises(Unsubscribed):
                await subscriber.get()


async def test_the_listener_task_carries_the_backends_failure() -> None:
    backend = _backend()

    async def broken() -> Event:
        raise RuntimeError("backend bug")

    with BROADCASTER.holds(
        "Broadcast.connect() keeps its listener task as _listener_task, which moves the"
        " backend's events to subscribers and ends with the backend's exception"
    ):
        broadcast = Broadcast(backend=backend)
        await broadcast.connect()
        listener = listener_task(broadcast)
        try:
            assert isinstance(listener, asyncio.Task)
            assert not listener.done()
            async with asyncio.timeout(5), broadcast.subscribe("c") as subscriber:
                await broadcast.publish("c", "before")
                assert (await subscriber.get()).message == "before"
                backend.next_published = broken  # type: ignore[method-assign]
                await broadcast.publish("c", "wakes the listener")
                await asyncio.wait([listener])
            assert isinstance(listener.exception(), RuntimeError)
        finally:
            listener.cancel()
            await asyncio.wait([listener])
            await backend.disconnect()
