"""follow() resumes after the server cut its socket as too slow (close code 4100)."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from runwire_client import Event, RunwireClient
from tests.support.graphql import definition
from tests.support.inprocess import Served, serving

from runwire.app import create_app
from runwire.events.slow_clients import SlowClients
from runwire.settings import Settings

LINES = 30
TALKER = definition(
    "{key: talk, kind: shell, with: {argv: [sh, -c,"
    f" 'for i in $(seq 1 {LINES}); do echo line $i; sleep 0.03; done']}}}}"
)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """The real app served in the test's loop, so the test can cut a socket as the server does."""
    settings = Settings(data_dir=tmp_path / "data", load_examples=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as in tests/contract/conftest.py
        app = create_app(settings)
    async with serving(app, settings.admin_token_file) as found:
        yield found


async def test_follow_resumes_after_the_server_cuts_it_as_too_slow(served: Served) -> None:
    slow_clients: SlowClients = served.app.state.slow_clients
    received: list[Event] = []
    async with RunwireClient(served.url, served.token, reconnect_timeout=10) as client:
        started = await client.start(definition=TALKER)
        async with asyncio.timeout(30):
            async for event in client.follow(started.id):
                received.append(event)
                if len(received) == 5:
                    # What the stall timer does to a socket whose client stopped reading.
                    (watched,) = slow_clients.watched()
                    watched.end()
        final = await client.get(started.id)
    assert [e.seq for e in received] == list(range(1, final.last_seq + 1))
    assert received[-1].terminal
