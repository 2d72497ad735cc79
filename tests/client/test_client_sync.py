"""SyncRunwireClient: the same calls, blocking, with plain iterators; used from plain code."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from runwire_client import (
    ExecutionFilter,
    ExecutionStatus,
    InvalidTransitionError,
    NotFoundError,
    OutputChunk,
    SyncRunwireClient,
)
from tests.support.graphql import definition
from tests.support.server import Server

SCRIPT = "for i in 1 2 3; do echo $i; sleep 0.05; done"
COUNT = definition(
    f"{{key: count, kind: shell, with: {{argv: [sh, -c, '{SCRIPT}']}}}}", name="sync-count"
)


def _until(client: SyncRunwireClient, execution_id: str, *statuses: str) -> ExecutionStatus:
    deadline = time.monotonic() + 30
    while (status := client.get(execution_id).status) not in statuses:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return status


def test_the_blocking_client_runs_follows_and_lists(server: Server) -> None:
    label = f"sync-{time.time()}"
    with SyncRunwireClient(server.url, server.token) as client:
        started = client.start(definition=COUNT, labels=[label])
        events = list(client.follow(started.id))
        assert [e.seq for e in events] == list(range(1, events[-1].seq + 1))
        assert events[-1].terminal
        assert "".join(e.text for e in events if isinstance(e, OutputChunk)) == "1\n2\n3\n"

        done = client.get(started.id)
        assert done.status is ExecutionStatus.SUCCEEDED
        assert done.last_seq == events[-1].seq
        assert [s.key for s in done.steps] == ["count"]
        assert [s.name for s in client.trace(started.id).spans] == ["sync-count", "count"]
        countdown = {s.name: s for s in client.scenarios()}["countdown"]
        assert (countdown.version, [i.name for i in countdown.inputs]) == (1, ["count"])
        assert countdown.description.startswith("Count down")

        second = client.start(definition=COUNT, labels=[label])
        listed = [e.id for e in client.history(ExecutionFilter(label=label), page_size=1)]
        assert listed == [second.id, started.id]
        page = client.history_page(ExecutionFilter(label=label), first=1)
        assert page.has_next_page
        assert [e.id for e in page.executions] == [second.id]
        _until(client, second.id, "SUCCEEDED")


def test_the_blocking_client_steers_and_raises_typed_errors(server: Server) -> None:
    with SyncRunwireClient(server.url, server.token) as client:
        with pytest.raises(NotFoundError, match="nope"):
            client.get("nope")
        with pytest.raises(NotFoundError):
            next(client.follow("nope"))
        with pytest.raises(ValueError, match="after_seq"):
            client.follow("any", after_seq=-1)

        long = client.start(definition=definition("{key: a, kind: sleep, with: {seconds: 30}}"))
        _until(client, long.id, "RUNNING")
        with pytest.raises(InvalidTransitionError) as running:
            client.resume(long.id)
        assert running.value.current_status == "RUNNING"
        client.pause(long.id)
        client.stop(long.id)
        assert _until(client, long.id, "CANCELLED") is ExecutionStatus.CANCELLED
        client.delete(long.id)
        with pytest.raises(NotFoundError):
            client.get(long.id)
        with pytest.raises(NotFoundError):
            client.delete(long.id)


def test_a_follow_closed_early_lets_the_client_go_on(server: Server) -> None:
    with SyncRunwireClient(server.url, server.token) as client:
        started = client.start(definition=COUNT)
        events = client.follow(started.id)
        assert next(events).seq == 1
        events.close()
        # The loop thread is free: the next call is served and the execution ends on its own.
        assert _until(client, started.id, "SUCCEEDED") is ExecutionStatus.SUCCEEDED


async def test_the_blocking_client_works_inside_a_running_event_loop(server: Server) -> None:
    with SyncRunwireClient(server.url, server.token) as client:
        assert client.start("hello").status in {ExecutionStatus.QUEUED, ExecutionStatus.RUNNING}


def test_a_closed_client_refuses_calls(server: Server) -> None:
    client = SyncRunwireClient(server.url, server.token)
    with pytest.raises(RuntimeError, match="with SyncRunwireClient"):
        client.get("x")
    with client:
        pass
    client.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="with SyncRunwireClient"):
        client.get("x")


def test_ctrl_c_interrupts_a_blocked_follow_and_the_client_goes_on(server: Server) -> None:
    with SyncRunwireClient(server.url, server.token) as client:
        started = client.start(definition=definition("{key: a, kind: sleep, with: {seconds: 30}}"))
        events = client.follow(started.id)
        assert next(events).seq == 1
        interrupt = threading.Timer(
            0.5, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)
        )
        interrupt.start()
        began = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            for _ in events:
                pass
        assert time.monotonic() - began < 5
        client.stop(started.id)
        assert _until(client, started.id, "CANCELLED") is ExecutionStatus.CANCELLED
