"""follow(): every event exactly once, in order, across dropped connections; and live()."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime

import pytest
from runwire_client import (
    ConnectionFailedError,
    Event,
    ExecutionFilter,
    ExecutionStatus,
    ExecutionStatusChanged,
    NotFoundError,
    OutputChunk,
    RunwireClient,
    StepStatus,
    StepStatusChanged,
    UpdateKind,
)
from tests.support.graphql import definition
from tests.support.proxy import Connection, proxy_to
from tests.support.server import Server

LINES = 40
# One line every 50 ms (each its own output event): about two seconds of steady events.
TALKER = definition(
    "{key: talk, kind: shell, with: {argv: [sh, -c,"
    f" 'for i in $(seq 1 {LINES}); do echo line $i; sleep 0.05; done']}}}}",
    name="talker",
)
# Cut the client's connections after it has seen this many events: early, middle, late.
CUT_AFTER = (4, 14, 26)


def _output(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, OutputChunk))


async def _drain(events: AsyncIterator[Event]) -> None:
    async for _ in events:
        pass


def _sockets(connections: list[Connection]) -> list[Connection]:
    """The proxied connections that were WebSocket upgrades (not HTTP requests)."""
    return [c for c in connections if c.downstream_bytes.startswith(b"HTTP/1.1 101")]


async def test_follow_yields_typed_events_in_order_and_ends(server: Server) -> None:
    async with RunwireClient(server.url, server.token) as client:
        started = await client.start(definition=TALKER)
        async with asyncio.timeout(30):
            events = [event async for event in client.follow(started.id)]
        final = await client.get(started.id)

    assert [e.seq for e in events] == list(range(1, final.last_seq + 1))
    assert _output(events) == "".join(f"line {i}\n" for i in range(1, LINES + 1))
    statuses = [e.status for e in events if isinstance(e, ExecutionStatusChanged)]
    assert statuses == ["QUEUED", "RUNNING", "SUCCEEDED"]
    steps = [(e.step_key, e.status) for e in events if isinstance(e, StepStatusChanged)]
    assert steps == [("talk", StepStatus.RUNNING), ("talk", StepStatus.SUCCEEDED)]
    assert [e.terminal for e in events].count(True) == 1
    assert events[-1].terminal
    assert all(e.at.tzinfo is not None for e in events)


async def test_follow_resumes_after_a_seq_and_ends_at_once_past_the_end(server: Server) -> None:
    async with RunwireClient(server.url, server.token) as client:
        started = await client.start("hello")
        everything = [event async for event in client.follow(started.id)]
        rest = [event async for event in client.follow(started.id, after_seq=2)]
        past_the_end = [e async for e in client.follow(started.id, after_seq=everything[-1].seq)]
        with pytest.raises(ValueError, match="after_seq"):
            await anext(client.follow(started.id, after_seq=-1))
    assert rest == everything[2:]
    assert past_the_end == []


async def test_following_a_missing_execution_is_not_found_at_once(server: Server) -> None:
    async with RunwireClient(server.url, server.token) as client:
        began = time.monotonic()
        with pytest.raises(NotFoundError, match="execution nope not found") as missing:
            await anext(client.follow("nope"))
    assert missing.value.error_type == "NotFoundError"
    assert time.monotonic() - began < 2  # refused, not retried


async def test_three_dropped_connections_lose_and_repeat_nothing(server: Server) -> None:
    async with (
        proxy_to(server.url) as proxy,
        RunwireClient(proxy.url, server.token, reconnect_timeout=10) as client,
    ):
        started = await client.start(definition=TALKER)
        received: list[Event] = []
        # Each connection notes how many events the client had yielded when it was opened.
        proxy.on_accept = lambda: len(received)
        async with asyncio.timeout(30):
            async for event in client.follow(started.id):
                received.append(event)
                if len(received) in CUT_AFTER:
                    assert not event.terminal
                    assert proxy.cut() >= 1  # the subscription's socket, mid-run
        final = await client.get(started.id)

    # Every event exactly once, in order, then the end.
    assert [e.seq for e in received] == list(range(1, final.last_seq + 1))
    assert received[-1].terminal
    assert final.status is ExecutionStatus.SUCCEEDED
    assert _output(received) == "".join(f"line {i}\n" for i in range(1, LINES + 1))
    # The cuts came while the execution was producing events: output followed each one.
    assert all(isinstance(received[cut], OutputChunk) for cut in CUT_AFTER)

    sockets = _sockets(proxy.connections)
    assert len(sockets) == 1 + len(CUT_AFTER)
    assert sockets[0].seqs[0] == 1
    for resumed in sockets[1:]:
        # Resubscribed from the last seq the client had yielded: the server's first event on
        # the new socket is the next one, not the first (a replay) and not a later one (a gap).
        yielded = resumed.note
        assert isinstance(yielded, int)
        assert yielded >= CUT_AFTER[0]
        assert resumed.seqs[0] == yielded + 1


async def test_follow_waits_out_an_outage_and_misses_nothing(server: Server) -> None:
    async with (
        proxy_to(server.url) as proxy,
        RunwireClient(proxy.url, server.token, reconnect_timeout=10) as client,
    ):
        started = await client.start(definition=TALKER)

        async def outage() -> None:
            """Unreachable for a while, as during a server restart: connections refused."""
            await proxy.refuse()
            await asyncio.sleep(0.8)
            await proxy.reopen()

        received: list[Event] = []
        async with asyncio.timeout(30), asyncio.TaskGroup() as tasks:
            async for event in client.follow(started.id):
                received.append(event)
                if len(received) == CUT_AFTER[0]:
                    tasks.create_task(outage())
        final = await client.get(started.id)

    assert [e.seq for e in received] == list(range(1, final.last_seq + 1))
    assert _output(received) == "".join(f"line {i}\n" for i in range(1, LINES + 1))
    assert len(_sockets(proxy.connections)) == 2


async def test_follow_gives_up_after_its_reconnect_budget(server: Server) -> None:
    long_run = definition("{key: a, kind: sleep, with: {seconds: 30}}")
    async with (
        RunwireClient(server.url, server.token) as direct,
        proxy_to(server.url) as proxy,
        RunwireClient(proxy.url, server.token, reconnect_timeout=1) as client,
    ):
        started = await direct.start(definition=long_run)
        try:
            async with aclosing(client.follow(started.id)) as events:
                first = await anext(events)
                assert first.seq == 1
                await proxy.refuse()  # the server is unreachable from now on
                began = time.monotonic()
                with pytest.raises(ConnectionFailedError, match="gave up") as gave_up:
                    await asyncio.wait_for(_drain(events), 10)
            waited = time.monotonic() - began
        finally:
            await direct.stop(started.id)
    assert gave_up.value.error_type == "ConnectionError"
    assert 0.3 < waited < 3


async def test_stopping_early_closes_the_socket(server: Server) -> None:
    async with (
        proxy_to(server.url) as proxy,
        RunwireClient(proxy.url, server.token) as client,
    ):
        started = await client.start(definition=TALKER)
        async with aclosing(client.follow(started.id)) as events:
            async for event in events:
                if isinstance(event, OutputChunk):
                    break
        [socket] = _sockets(proxy.connections)
        async with asyncio.timeout(5):
            while not socket.client.transport.is_closing():
                await asyncio.sleep(0.02)
        await client.stop(started.id)


async def test_live_shows_status_changes_of_matching_executions(server: Server) -> None:
    label = f"live-{datetime.now(UTC).timestamp()}"
    text = definition("{key: a, kind: sleep, with: {seconds: 1}}")
    async with RunwireClient(server.url, server.token) as client:
        started = await client.start(definition=text, labels=[label])
        seen = []
        async with asyncio.timeout(30), aclosing(client.live(ExecutionFilter(label=label))) as live:
            async for update in live:
                seen.append(update)
                if update.status.is_terminal:
                    break
    assert {update.execution.id for update in seen} == {started.id}
    assert seen[-1].status is ExecutionStatus.SUCCEEDED
    assert seen[-1].kind is UpdateKind.CHANGED
    assert label in seen[-1].execution.labels


async def test_live_reports_a_dropped_connection(server: Server) -> None:
    label = f"live-cut-{datetime.now(UTC).timestamp()}"
    async with (
        proxy_to(server.url) as proxy,
        RunwireClient(proxy.url, server.token) as client,
        aclosing(client.live(ExecutionFilter(label=label))) as live,
    ):
        waiting = asyncio.ensure_future(anext(live))
        async with asyncio.timeout(10):
            while not _sockets(proxy.connections):
                await asyncio.sleep(0.02)
        proxy.cut()
        with pytest.raises(ConnectionFailedError) as dropped:
            await asyncio.wait_for(waiting, 10)
    # Nothing matches the label, so the only way out of anext was the dropped connection.
    assert "could not reach" in dropped.value.message
