"""The compat modules' assumptions together, on the path a live batch takes to many sockets.

Subscribers of one execution and document that are caught up park; the one still following the
hub sends each batch to them with Litestar's send stepped by hand; the first subscriber's own
message is encoded once by the controller. Each of these only saves work, so each is checked
explicitly: when one breaks, every subscriber still gets its events, the slow way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.support.contract import Contract
from tests.support.graphql import definition, start, subscription_data
from tests.support.inprocess import Served

from runwire.graphql.fanout import send_groups, sharing
from runwire.graphql.fanout.compat.litestar import PendingSend, send_without_waiting
from runwire.graphql.fanout.sharing import encode_next_message

STRAWBERRY = Contract("strawberry-graphql", "strawberry")
LITESTAR = Contract("litestar", "litestar")
SHARING = Contract("strawberry-graphql", "strawberry", ("graphql-core", "graphql_core"))
SUBSCRIBERS = 3
LINES = 30
FOLLOW = """
subscription($id: ID!) {
  executionEvents(executionId: $id) { lastSeq events { seq ... on OutputChunk { text } } }
}
"""


def chatty_after(gate: Path) -> str:
    """A step that waits for `gate`, then writes LINES lines with pauses between them."""
    script = (
        f"until [ -e {gate} ]; do sleep 0.02; done;"
        f" for i in $(seq 1 {LINES}); do echo line $i; sleep 0.01; done"
    )
    return definition(f'{{key: chat, kind: shell, with: {{argv: ["sh", "-c", "{script}"]}}}}')


async def parked_count(served: Served, *, reaching: int, within: float) -> int:
    """How many subscriptions are parked once `reaching` are, or `within` seconds have passed."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        parked: int = served.services.send_groups.parked_count
        if parked >= reaching or asyncio.get_running_loop().time() > deadline:
            return parked
        await asyncio.sleep(0.01)


async def test_caught_up_subscribers_park_and_a_sender_sends_them_each_batch(
    runwire: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sends: list[bool] = []

    def stepped(socket: Any, data: str) -> PendingSend | None:
        pending = send_without_waiting(socket, data)
        sends.append(pending is None)
        return pending

    encoded: list[str] = []

    def encode(message: object) -> str | None:
        text = encode_next_message(message)
        if text is not None:
            encoded.append(text)
        return text

    monkeypatch.setattr(send_groups, "send_without_waiting", stepped)
    monkeypatch.setattr(sharing, "encode_next_message", encode)
    gate = tmp_path / "gate"
    execution_id = await start(runwire, definition=chatty_after(gate))
    followers = [
        asyncio.create_task(subscription_data(runwire, f"s{n}", FOLLOW, {"id": execution_id}))
        for n in range(SUBSCRIBERS)
    ]
    try:
        with SHARING.holds(
            "caught-up subscribers of one document park while one follows the hub: each finds"
            " its operation's socket, and its batches' completions are memoised"
        ):
            parked = await parked_count(runwire, reaching=SUBSCRIBERS - 1, within=10)
            assert parked == SUBSCRIBERS - 1, f"{parked} of {SUBSCRIBERS} subscribers parked"
    finally:
        gate.touch()
    async with asyncio.timeout(30):
        received = await asyncio.gather(*followers)

    events = [[e for data in got for e in data["executionEvents"]["events"]] for got in received]
    assert [e["seq"] for e in events[0]] == list(range(1, len(events[0]) + 1))
    assert all(got == events[0] for got in events)
    assert "".join(e.get("text", "") for e in events[0]) == "".join(
        f"line {i}\n" for i in range(1, LINES + 1)
    )
    with LITESTAR.holds(
        "WebSocket.send_data, stepped once by hand, runs to its end for a client that keeps up"
    ):
        assert sends, "no batch was sent to a parked subscriber"
        assert all(sends), f"{sends.count(False)} of {len(sends)} sends waited"
    with STRAWBERRY.holds(
        "the Litestar integration encodes each socket message with the controller's encode_json"
    ):
        assert encoded
