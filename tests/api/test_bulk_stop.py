"""stopBatch against a real server: every queued, paused and waiting execution of a large batch
ends in the call, its running ones stop in their runner, and every follower sees each end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.support.graphql import definition, execute, follow, gated_step
from tests.support.server import Server

SERVER_BACKENDS = ("sqlite", "postgres")
SERVER_SETTINGS = {"RUNWIRE_RUNNER_SLOTS": "2"}

START_BATCH = """
mutation($input: StartBatchInput!) {
  startBatch(input: $input) {
    __typename ... on BatchSuccess { batch { id executions(first: 1000) { id } } }
  }
}
"""
STOP_BATCH = """
mutation($id: ID!) {
  stopBatch(id: $id) {
    __typename ... on BatchSuccess { batch { queued running waiting cancelled stoppedAt } }
  }
}
"""
BATCH = "query($id: ID!) { batch(id: $id) { total queued running cancelled progress } }"


async def batch_of(server: Server, batch_id: str) -> dict[str, Any]:
    return dict((await execute(server, BATCH, {"id": batch_id}))["batch"])


async def test_stopping_a_large_batch_ends_the_queued_at_once_and_stops_the_running(
    server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "never"  # the running steps end only when stopped
    started = await execute(
        server,
        START_BATCH,
        {
            "input": {
                "definition": definition(gated_step("hold", gate), name="held"),
                "runs": [{} for _ in range(1000)],
                "concurrency": 1000,
            }
        },
    )
    batch = started["startBatch"]["batch"]
    ids = [e["id"] for e in batch["executions"]]
    # Two runner slots: two run, the rest wait in the queue.
    found: dict[str, Any] = {}
    while found.get("running") != 2:
        found = await batch_of(server, batch["id"])
        await asyncio.sleep(0.05)
    stopped = (await execute(server, STOP_BATCH, {"id": batch["id"]}))["stopBatch"]
    assert stopped["__typename"] == "BatchSuccess", stopped
    # Nothing queued is left by the time the call answers; the two running ones are asked.
    assert stopped["batch"]["queued"] == 0
    assert stopped["batch"]["stoppedAt"] is not None
    while (found := await batch_of(server, batch["id"]))["progress"] < 1:
        await asyncio.sleep(0.05)
    assert found == {
        "total": 1000,
        "queued": 0,
        "running": 0,
        "cancelled": 1000,
        "progress": 1.0,
    }
    # A follower of one of them saw its end, as a single stop would show it.
    events = await follow(server, ids[-1])
    assert events[-1]["type"] == "EXECUTION_STATUS"
    assert events[-1]["status"] == "CANCELLED"
    assert events[-1]["error"] == f"stopped: batch {batch['id']} stopped"
