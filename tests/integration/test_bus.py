"""The bus on memory, real Postgres and real Redis: live on connect, complete, bounded, healing."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import aclosing

import asyncpg
import pytest
from broadcaster import Broadcast, Event
from redis import asyncio as aioredis
from tests.support.postgres import fresh_database, redis_url

from runwire.events.bus import (
    MAX_MESSAGE_BYTES,
    RESYNC,
    Bus,
    BusClosed,
    BusDisconnected,
    Notice,
    Resync,
    decode_notices,
)
from runwire.events.bus_backends import backend_for

Item = list[Notice] | Resync


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
def channel() -> str:
    # Random per test: the Redis server is shared with parallel runs.
    return f"runwire.test.{secrets.token_hex(6)}"


async def take(items: AsyncIterator[Item], count: int) -> list[Notice]:
    """The next `count` notices, in order (skipping resyncs a parallel run's kill may cause)."""
    notices: list[Notice] = []
    while len(notices) < count:
        item = await anext(items)
        if not isinstance(item, Resync):
            notices.extend(item)
    return notices


async def test_round_trip(url: str, channel: str) -> None:
    async with (
        asyncio.timeout(10),
        Bus.connect(url, channel) as rx,
        Bus.connect(url, channel) as tx,
        aclosing(rx.receive()) as items,
    ):
        await tx.publish([])  # nothing is sent for nothing
        await tx.publish([Notice("e1", 1, 3), Notice("e2", 7, 7)])
        assert await take(items, 2) == [Notice("e1", 1, 3), Notice("e2", 7, 7)]


async def test_flags_survive_the_wire(url: str, channel: str) -> None:
    sent = [
        Notice("e1", 1, 3, status_changed=True),
        Notice("e2", 4, 4, control=True),
        Notice("e3", 5, 6, status_changed=True, control=True),
        Notice("e4", 2, 2),
    ]
    async with (
        asyncio.timeout(10),
        Bus.connect(url, channel) as rx,
        Bus.connect(url, channel) as tx,
        aclosing(rx.receive()) as items,
    ):
        await tx.publish(sent)
        assert await take(items, 4) == sent


async def test_ready_means_subscribed(url: str, channel: str) -> None:
    async with asyncio.timeout(10), Bus.connect(url, channel) as tx:
        for attempt in range(20):
            async with Bus.connect(url, channel) as rx, aclosing(rx.receive()) as items:
                await tx.publish([Notice(f"e{attempt}", 1, 1)])
                assert await take(items, 1) == [Notice(f"e{attempt}", 1, 1)]


async def test_concurrent_publishes_reach_every_bus(url: str, channel: str) -> None:
    sent = {Notice(f"e{i}", 1, i + 1) for i in range(50)}
    async with (
        asyncio.timeout(10),
        Bus.connect(url, channel) as tx,
        Bus.connect(url, channel) as rx1,
        Bus.connect(url, channel) as rx2,
        aclosing(rx1.receive()) as items1,
        aclosing(rx2.receive()) as items2,
    ):
        await asyncio.gather(*(tx.publish([notice]) for notice in sent))
        assert set(await take(items1, 50)) == sent
        assert set(await take(items2, 50)) == sent


async def test_long_publish_is_split_under_the_limit(url: str, channel: str) -> None:
    sent = [Notice(f"execution-{i:04d}-{secrets.token_hex(8)}", i + 1, i + 9) for i in range(2_000)]
    # A raw broadcaster subscriber on the same backend sees the messages exactly as sent.
    backend = backend_for(url)
    async with asyncio.timeout(10), Broadcast(backend=backend) as wire:
        await backend.subscribe(channel)
        async with (
            wire.subscribe(channel) as raw,
            Bus.connect(url, channel) as bus,
            aclosing(bus.receive()) as items,
        ):
            await bus.publish(sent)
            assert await take(items, 2_000) == sent
            messages: list[Event] = []
            while sum(len(decode_notices(message.message)) for message in messages) < 2_000:
                messages.append(await raw.get())
    assert len(messages) > 1
    assert all(len(message.message.encode()) < MAX_MESSAGE_BYTES for message in messages)


async def kill_listener_connections(url: str, channel: str) -> None:
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
async def test_lost_listener_connection_resyncs_then_delivers(url: str, channel: str) -> None:
    async with (
        asyncio.timeout(10),
        Bus.connect(url, channel) as rx,
        Bus.connect(url, channel) as tx,
        aclosing(rx.receive()) as items,
    ):
        await kill_listener_connections(url, channel)
        assert await anext(items) is RESYNC  # re-subscribed before it is announced
        await tx.publish([Notice("after", 1, 2)])
        assert await take(items, 1) == [Notice("after", 1, 2)]


async def test_receive_raises_when_the_listener_is_cancelled(url: str, channel: str) -> None:
    async with (
        asyncio.timeout(10),
        Bus.connect(url, channel) as rx,
        aclosing(rx.receive()) as items,
    ):
        waiting = asyncio.ensure_future(anext(items))
        await asyncio.sleep(0.01)
        rx._listener.cancel()  # white box: the task broadcaster runs, see Bus.connect
        with pytest.raises(BusDisconnected):
            await waiting


async def test_receive_raises_when_the_listener_fails(
    url: str, channel: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> Event:
        raise RuntimeError("backend bug")

    async with (
        asyncio.timeout(10),
        Bus.connect(url, channel) as rx,
        aclosing(rx.receive()) as items,
    ):
        await rx.publish([Notice("e1", 1, 1)])
        assert await take(items, 1) == [Notice("e1", 1, 1)]
        # White box: the listener now waits in next_published again; its next call fails.
        monkeypatch.setattr(rx._broadcast._backend, "next_published", broken)
        await rx.publish([Notice("e2", 1, 1)])
        assert await anext(items) == [Notice("e2", 1, 1)]  # delivered before the failure
        with pytest.raises(BusDisconnected) as raised:
            await anext(items)
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert "listener stopped" in caplog.text


async def test_malformed_messages_are_skipped(
    url: str, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret_payload = '{"not": "a notice list"}'
    async with (
        asyncio.timeout(10),
        Bus.connect(url, channel) as rx,
        aclosing(rx.receive()) as items,
    ):
        for garbage in ("not json", secret_payload, '[["e", 0, 1]]', '[["e", 1]]'):
            await rx._broadcast.publish(channel, garbage)
        await rx.publish([Notice("good", 1, 1)])
        with caplog.at_level(logging.WARNING, logger="runwire.events.bus"):
            assert await take(items, 1) == [Notice("good", 1, 1)]
    assert caplog.text.count("malformed message") == 4
    assert "a notice list" not in caplog.text
    assert "not json" not in caplog.text


async def test_closed_bus_refuses_work(channel: str) -> None:
    async with Bus.connect("memory://", channel) as bus:
        pass
    with pytest.raises(BusClosed):
        await bus.publish([Notice("e1", 1, 1)])
    with pytest.raises(BusClosed):
        await anext(bus.receive())


def test_unknown_scheme_is_refused_without_echoing_the_url() -> None:
    with pytest.raises(ValueError, match="'mqtt'") as raised:
        backend_for("mqtt://user:hunter2@broker")
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("url", ["postgresql://postgres@127.0.0.1:1/x", "redis://127.0.0.1:1/0"])
async def test_unreachable_server_fails_connect_without_leaks(url: str) -> None:
    with pytest.raises((OSError, aioredis.ConnectionError)):
        async with Bus.connect(url, "unused"):
            pass
