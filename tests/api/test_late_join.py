"""The late-joiner guarantee: every event with seq > afterSeq, exactly once, in order."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from gql import Client, GraphQLRequest
from tests.support.graphql import (
    FOLLOW,
    definition,
    execute,
    follow,
    start,
    wait_for_step,
    ws_transport,
)
from tests.support.server import Server

# Over a real bus a joiner meets notices that arrive after the local delivery, some for events
# it is reading from the backlog: the dedup and gap filling of Hub.follow on NOTIFY's timing.
SERVER_BACKENDS = ("sqlite", "postgres")

# Output lines with small pauses, so subscribers join while events are being written.
CHATTY = definition(
    '{key: chat, kind: shell, with: {argv: ["sh", "-c",'
    ' "for i in $(seq 1 60); do echo line $i; echo err $i >&2; sleep 0.005; done"]}}',
    '{key: more, kind: shell, with: {argv: ["sh", "-c", "seq 1 20"]}}',
)


async def test_many_subscribers_join_at_random_offsets(server: Server) -> None:
    rng = random.Random(7)
    ids = [await start(server, definition=CHATTY) for _ in range(4)]

    async def late_subscriber(execution_id: str) -> tuple[int, list[int], str]:
        await asyncio.sleep(rng.uniform(0, 0.6))
        after = rng.choice([0, 0, rng.randint(1, 30)])
        events = await follow(server, execution_id, after)
        return after, [e["seq"] for e in events], events[-1].get("status", "")

    jobs = [late_subscriber(execution_id) for execution_id in ids for _ in range(6)]
    async with asyncio.timeout(60):
        results = await asyncio.gather(*jobs)

    last_seq = {}
    query = "query($id: ID!) { execution(id: $id) { lastSeq status } }"
    for execution_id in ids:
        found = (await execute(server, query, {"id": execution_id}))["execution"]
        assert found["status"] == "SUCCEEDED"
        last_seq[execution_id] = found["lastSeq"]
    for (after, seqs, final_status), execution_id in zip(
        results, [i for i in ids for _ in range(6)], strict=True
    ):
        assert seqs == list(range(after + 1, last_seq[execution_id] + 1))
        assert final_status == "SUCCEEDED"


async def test_resume_after_seq_and_join_after_the_end(server: Server) -> None:
    execution_id = await start(server, definition=CHATTY)
    everything = await follow(server, execution_id)
    total = everything[-1]["seq"]
    resumed = await follow(server, execution_id, after_seq=total - 5)
    assert [e["seq"] for e in resumed] == list(range(total - 4, total + 1))
    assert resumed == everything[-5:]
    # Past the end: the subscription completes at once with nothing.
    assert await follow(server, execution_id, after_seq=total) == []


async def test_live_only_subscription_gets_only_new_events(server: Server, tmp_path: Path) -> None:
    # The step ticks until the test has seen live events, so the subscription always joins
    # while it runs (a step that slept a fixed time could end first on a loaded machine).
    gate = tmp_path / "gate"
    script = f"until [ -e {gate} ]; do echo tick; sleep 0.05; done; echo done"
    execution_id = await start(
        server,
        definition=definition(
            f'{{key: wait, kind: shell, with: {{argv: ["sh", "-c", "{script}"]}}}}'
        ),
    )
    await wait_for_step(server, execution_id, "wait", "RUNNING")
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(30), Client(transport=ws_transport(server)) as session:
        request = GraphQLRequest(FOLLOW, variable_values={"id": execution_id, "after": -1})
        async for message in session.subscribe(request):
            events.extend(message["executionEvents"]["events"])
            gate.touch()
    assert events[0]["seq"] > 1
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert events[-1]["status"] == "SUCCEEDED"
