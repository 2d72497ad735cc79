"""The bus on memory, real Postgres and real Redis: live on connect, complete, bounded, healing.

Both channels (EVENTS for notices, SIGNALS for the queue) are subscribed at connect; the tests
send on both, since the Redis backend must subscribe to them in one go.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import aclosing

import asyncpg
import pytest
from broadcaster import Event
from redis import asyncio as aioredis
from tests.support.postgres import fresh_database, redis_url

from runwire.events.bus import (
    EVENTS,
    MAX_MESSAGE_BYTES,
    RESYNC,
    SIGNALS,
    Bus,
    BusClosed,
    BusDisconnected,
    Resync,
)
from runwire.events.bus_backends import backend_for
from runwire.events.notices import Notice, publish_notices, receive_notices


@pytest.fixture(params=["memory", "postgres", "redis"])
async def url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "memory":
        yield f"memory://test-{secrets.token_hex(4)}"
    elif request.param == "postgres":
        async with fresh_database() as database_url:
            yield database_url
    else:
        yield await redis_url()


@pytest.fixture
def namespace() -> str:
    # Random per test: the Redis server is shared with parallel runs.
    return f"runwire-test-{secrets.token_hex(6)}"


async def take(items: AsyncIterator[str | Resync], count: int) -> list[str]:
    """The next `count` messages, in order (skipping resyncs a parallel run's kill may cause)."""
    messages: list[str] = []
    while len(messages) < count:
        item = await anext(items)
        if not isinstance(item, Resync):
            messages.append(item)
    return messages


async def test_round_trip_on_each_channel(url: str, namespace: str) -> None:
    async with (
        asyncio.timeout(10),
        Bus.connect(url, namespace) as rx,
        Bus.connect(url, namespace) as tx,
        aclosing(rx.receive(EVENTS)) as events,
        aclosing(rx.receive(SIGNALS)) as signals,
    ):
        await tx.publish(SIGNALS, "wake")
        await tx.publish(EVENTS, "first")
        await tx.publish(EVENTS, "second")
        assert await take(events, 2) == ["first", "second"]
        assert await take(signals, 1) == ["wake"]


async def test_namespaces_keep_buses_apart(url: str, namespace: str) -> None:
    async with (
        asyncio.timeout(10),
        Bus.connect(url, namespace) as rx,
        Bus.connect(url, namespace + "-other") as other,
        Bus.connect(url, namespace) as tx,
        aclosing(rx.receive(EVENTS)) as events,
    ):
        await other.publish(EVENTS, "not for rx")
        await tx.publish(EVENTS, "for rx")
        assert await take(events, 1) == ["for rx"]


async def test_notices_survive_the_wire(url: str, namespace: str) -> None:
    sent = [
        Notice("e1", 1, 3, status_changed=True),
        Notice("e2", 4, 4),
        Notice("e3", 5, 6),
        Notice("e4", 7, 9, usage_changed=True),
    ]
    async with (
        asyncio.timeout(10),
        Bus.connect(url, namespace) as rx,
        Bus.connect(url, namespace) as tx,
        aclosing(receive_notices(rx)) as items,
    ):
        await publish_notices(tx, [])  # nothing is sent for nothing
        await publish_notices(tx, sent)
        received: list[Notice] = []
        while len(received) < len(sent):
            item = await anext(items)
            if not isinstance(item, Resync):
                received.extend(item)
        assert received == sent


async def test_ready_means_subscribed(url: str, namespace: str) -> None:
    async with asyncio.timeout(10), Bus.connect(url, namespace) as tx:
        for attempt in range(20):
            async with (
                Bus.connect(url, namespace) as rx,
                aclosing(rx.receive(EVENTS)) as events,
                aclosing(rx.receive(SIGNALS)) as signals,
            ):
                await tx.publish(EVENTS, f"e{attempt}")
                await tx.publish(SIGNALS, f"s{attempt}")
                assert await take(events, 1) == [f"e{attempt}"]
                assert await take(signals, 1) == [f"s{attempt}"]


async def test_concurrent_publishes_reach_every_bus(url: str, namespace: str) -> None:
    sent = {f"m{i}" for i in range(50)}
    async with (
        asyncio.timeout(10),
        Bus.connect(url, namespace) as tx,
        Bus.connect(url, namespace) as rx1,
        Bus.connect(url, namespace) as rx2,
        aclosing(rx1.receive(EVENTS)) as items1,
        aclosing(rx2.receive(EVENTS)) as items2,
    ):
        await asyncio.gather(*(tx.publish(EVENTS, message) for message in sent))
        assert set(await take(items1, 50)) == sent
        assert set(await take(items2, 50)) == sent


async def test_a_message_at_the_limit_is_refused_below_it_sent(url: str, namespace: str) -> None:
    async with (
        asyncio.timeout(10),
        Bus.connect(url, namespace) as bus,
        aclosing(bus.receive(EVENTS)) as events,
    ):
        with pytest.raises(ValueError, match="under 7500 bytes"):
            await bus.publish(EVENTS, "x" * MAX_MESSAGE_BYTES)
        largest = "y" * (MAX_MESSAGE_BYTES - 1)
        await bus.publish(EVENTS, largest)
        assert await take(events, 1) == [largest]
        with pytest.raises(ValueError, match="no bus channel"):
            await bus.publish("elsewhere", "z")


async def kill_listener_connections(url: str) -> None:
    """Cut the LISTEN connections of this test's database, or every Redis pubsub client."""
    if url.startswith("redis"):
        client = aioredis.Redis.from_url(url)
        try:
            assert await client.client_kill_filter(_type="pubsub") >= 1
        finally:
            await client.aclose()
        return
    database = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(url)
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND query LIKE 'LISTEN%'",
            database,
        )
        assert killed >= 1
    finally:
        await conn.close()


@pytest.mark.parametrize("url", ["postgres", "redis"], indirect=True)
async def test_lost_listener_connection_resyncs_then_delivers(url: str, namespace: str) -> None:
    async with (
        asyncio.timeout(10),
        Bus.connect(url, namespace) as rx,
        Bus.connect(url, namespace) as tx,
        aclosing(rx.receive(EVENTS)) as events,
        aclosing(rx.receive(SIGNALS)) as signals,
    ):
        await kill_listener_connections(url)
        # Re-subscribed before it is announced, on every channel.
        assert await anext(events) is RESYNC
        assert await anext(signals) is RESYNC
        await tx.publish(EVENTS, "after")
        await tx.publish(SIGNALS, "after too")
        assert await take(events, 1) == ["after"]
        assert await take(signals, 1) == ["after too"]


async def test_receive_raises_when_the_listener_is_cancelled(url: str, namespace: str) -> None:
    async with (
        asyncio.timeout(10),
        Bus.connect(url, namespace) as rx,
        aclosing(rx.receive(EVENTS)) as events,
    ):
        waiting = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.01)
        rx._listener.cancel()  # white box: the task broadcaster runs, see Bus.connect
        with pytest.raises(BusDisconnected):
            await waiting


async def test_receive_raises_when_the_listener_fails(
    url: str, namespace: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> Event:
        raise RuntimeError("backend bug")

    async with (
        asyncio.timeout(10),
        Bus.connect(url, namespace) as rx,
        aclosing(rx.receive(EVENTS)) as events,
    ):
        await rx.publish(EVENTS, "e1")
        assert await take(events, 1) == ["e1"]
        # White box: the listener now waits in next_published again; its next call fails.
        monkeypatch.setattr(rx._broadcast._backend, "next_published", broken)
        await rx.publish(EVENTS, "e2")
        assert await anext(events) == "e2"  # delivered before the failure
        with pytest.raises(BusDisconnected) as raised:
            await anext(events)
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert "listener stopped" in caplog.text


async def test_malformed_notices_are_skipped_without_echoing_them(
    url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret_payload = '{"not": "a notice list"}'
    async with (
        asyncio.timeout(10),
        Bus.connect(url, namespace) as rx,
        aclosing(receive_notices(rx)) as items,
    ):
        for garbage in ("not json", secret_payload, '[["e", 0, 1]]', '[["e", 1]]'):
            await rx.publish(EVENTS, garbage)
        await publish_notices(rx, [Notice("good", 1, 1)])
        with caplog.at_level(logging.WARNING, logger="runwire.events.notices"):
            item = await anext(items)
            while isinstance(item, Resync):
                item = await anext(items)
            assert item == [Notice("good", 1, 1)]
    assert caplog.text.count("malformed notice message") == 4
    assert "a notice list" not in caplog.text
    assert "not json" not in caplog.text


async def test_closed_bus_refuses_work(namespace: str) -> None:
    async with Bus.connect("memory://", namespace) as bus:
        pass
    with pytest.raises(BusClosed):
        await bus.publish(EVENTS, "late")
    with pytest.raises(BusClosed):
        await anext(bus.receive(EVENTS))


def test_unknown_scheme_is_refused_without_echoing_the_url() -> None:
    with pytest.raises(ValueError, match="'mqtt'") as raised:
        backend_for("mqtt://user:hunter2@broker")
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("url", ["postgresql://postgres@127.0.0.1:1/x", "redis://127.0.0.1:1/0"])
async def test_unreachable_server_fails_connect_without_leaks(url: str) -> None:
    with pytest.raises((OSError, aioredis.ConnectionError)):
        async with Bus.connect(url, "unused"):
            pass
