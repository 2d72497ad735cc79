"""Many subscribers of one live execution, with different documents, each get their own answer.

The server completes a live batch once per document and sends that message to every other
subscriber with the same document; these checks hold whichever subscriber got there first.
Subscribers that are live park while others relay their batches (graphql/relay.py): that holds
however many of them leave, relays included.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import websockets
from tests.support.graphql import definition, execute, start
from tests.support.server import Server
from websockets.asyncio.client import ClientConnection, connect

LINES = 80
# Lines with small pauses after a short wait, so every subscriber is following live.
CHATTY = definition(
    '{key: chat, kind: shell, with: {argv: ["sh", "-c",'
    f' "sleep 0.5; for i in $(seq 1 {LINES}); do echo line $i; sleep 0.004; done"]}}}}'
)
# A longer stream, for subscribers to leave while it runs.
STEADY = definition(
    '{key: chat, kind: shell, with: {argv: ["sh", "-c",'
    ' "sleep 0.5; for i in $(seq 1 150); do echo line $i; sleep 0.01; done"]}}'
)
FULL = """
subscription Follow($id: ID!) {
  executionEvents(executionId: $id) {
    lastSeq
    events { seq type ... on OutputChunk { stream text } }
  }
}
"""
NARROW = "subscription($id: ID!) { ev: executionEvents(executionId: $id) { events { seq } } }"
TOGGLED = """
subscription($id: ID!, $text: Boolean!) {
  executionEvents(executionId: $id) {
    events { seq ... on OutputChunk { text @include(if: $text) } }
  }
}
"""


@asynccontextmanager
async def acknowledged(server: Server) -> AsyncIterator[ClientConnection]:
    """A graphql-transport-ws socket whose connection_init (with the token) was acknowledged."""
    async with connect(
        server.graphql_ws, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {server.token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        yield ws


async def subscribe(
    server: Server, operation_id: str, document: str, variables: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every `next` payload's data of one graphql-transport-ws operation, until `complete`."""
    received: list[dict[str, Any]] = []
    async with acknowledged(server) as ws:
        payload = {"query": document, "variables": variables}
        await ws.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": payload}))
        async for raw in ws:
            message = json.loads(raw)
            assert message["id"] == operation_id, message
            if message["type"] == "complete":
                return received
            assert message["type"] == "next", message
            assert set(message["payload"]) == {"data"}, message
            received.append(message["payload"]["data"])
    raise AssertionError(f"{operation_id}: closed before complete")


def events_of(messages: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [event for data in messages for event in data[key]["events"]]


async def test_each_document_gets_its_own_answer_from_shared_batches(server: Server) -> None:
    execution_id = await start(server, definition=CHATTY)
    same = [subscribe(server, f"full-{n}", FULL, {"id": execution_id}) for n in range(4)]
    others = [
        subscribe(server, "narrow", NARROW, {"id": execution_id}),
        subscribe(server, "with-text", TOGGLED, {"id": execution_id, "text": True}),
        subscribe(server, "without-text", TOGGLED, {"id": execution_id, "text": False}),
    ]
    async with asyncio.timeout(60):
        *fulls, narrow, with_text, without_text = await asyncio.gather(*same, *others)

    found = await execute(
        server, "query($id: ID!) { execution(id: $id) { lastSeq status } }", {"id": execution_id}
    )
    assert found["execution"]["status"] == "SUCCEEDED"
    seqs = list(range(1, found["execution"]["lastSeq"] + 1))

    full_events = events_of(fulls[0], "executionEvents")
    assert [event["seq"] for event in full_events] == seqs
    for messages in fulls:
        assert events_of(messages, "executionEvents") == full_events
        assert all(
            m["executionEvents"]["lastSeq"] == m["executionEvents"]["events"][-1]["seq"]
            for m in messages
        )
    output = "".join(e["text"] for e in full_events if e["type"] == "OUTPUT")
    assert output == "".join(f"line {i}\n" for i in range(1, LINES + 1))

    assert events_of(narrow, "ev") == [{"seq": seq} for seq in seqs]
    texts = {e["seq"]: e["text"] for e in full_events if e["type"] == "OUTPUT"}
    assert events_of(with_text, "executionEvents") == [
        {"seq": seq, "text": texts[seq]} if seq in texts else {"seq": seq} for seq in seqs
    ]
    assert events_of(without_text, "executionEvents") == [{"seq": seq} for seq in seqs]


async def followers(server: Server) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(f"{server.url}/health")).json()["followers"])


async def test_subscribers_leaving_mid_stream_leave_the_others_every_event(
    server: Server,
) -> None:
    execution_id = await start(server, definition=STEADY)
    variables = {"id": execution_id}
    leaving = [
        asyncio.create_task(subscribe(server, f"leaving-{n}", FULL, variables)) for n in range(6)
    ]
    staying = [
        asyncio.create_task(subscribe(server, f"staying-{n}", FULL, variables)) for n in range(2)
    ]
    query = "query($id: ID!) { execution(id: $id) { lastSeq } }"
    async with asyncio.timeout(30):
        while (await execute(server, query, variables))["execution"]["lastSeq"] < 20:
            await asyncio.sleep(0.05)
        # Parked subscriptions are not the hub's followers, and still count as live ones.
        assert await followers(server) == 8
        # One at a time, whichever of them relays for the others: each ends its socket.
        for task in leaving:
            task.cancel()
            await asyncio.sleep(0.1)
        kept = await asyncio.gather(*staying)
        while await followers(server) != 0:
            await asyncio.sleep(0.05)

    found = await execute(
        server, "query($id: ID!) { execution(id: $id) { lastSeq status } }", variables
    )
    assert found["execution"]["status"] == "SUCCEEDED"
    seqs = list(range(1, found["execution"]["lastSeq"] + 1))
    for messages in kept:
        assert [e["seq"] for e in events_of(messages, "executionEvents")] == seqs


async def test_operations_on_one_socket_share_batches_and_end_alone(server: Server) -> None:
    execution_id = await start(server, definition=STEADY)
    payload = {"query": FULL, "variables": {"id": execution_id}}
    seqs: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    completed: set[str] = set()
    async with acknowledged(server) as ws:
        for operation_id in seqs:
            await ws.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": payload}))
        unsubscribed = False
        async with asyncio.timeout(30):
            while completed != {"a", "c"}:
                message = json.loads(await ws.recv())
                if message["type"] == "complete":
                    completed.add(message["id"])
                    continue
                assert message["type"] == "next", message
                events = message["payload"]["data"]["executionEvents"]["events"]
                seqs[message["id"]] += [event["seq"] for event in events]
                if not unsubscribed and len(seqs["b"]) >= 20:
                    # Ends one operation mid-stream, parked or relaying; the others go on.
                    await ws.send(json.dumps({"id": "b", "type": "complete"}))
                    unsubscribed = True
            while await followers(server) != 0:
                await asyncio.sleep(0.05)

    found = await execute(
        server, "query($id: ID!) { execution(id: $id) { lastSeq status } }", {"id": execution_id}
    )
    assert found["execution"]["status"] == "SUCCEEDED"
    every = list(range(1, found["execution"]["lastSeq"] + 1))
    assert seqs["a"] == every
    assert seqs["c"] == every
    assert seqs["b"] == every[: len(seqs["b"])]  # a clean prefix, then nothing
    assert 20 <= len(seqs["b"]) < len(every)
