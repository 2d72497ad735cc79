"""Queue order (priority, then age) and slot release, with one slot."""

from __future__ import annotations

import asyncio

from tests.support.graphql import STOP, definition, execute, start, wait_for_status
from tests.support.server import Server

SERVER_SETTINGS = {"RUNWIRE_RUNNER_SLOTS": "1", "RUNWIRE_GRACE_SECONDS": "0.2"}
# The claim differs on Postgres (an advisory lock serialises claims; timestamps are timestamptz),
# and the queue order is that claim's ORDER BY.
SERVER_BACKENDS = ("sqlite", "postgres")

BLOCKER = definition('{key: block, kind: shell, with: {argv: ["sleep", "60"]}}')
QUICK = definition("{key: quick, kind: sleep, with: {seconds: 0.05}}")

QUEUE = "{ queue { queued running slots runnersAlive runnerSlots warning } }"
DETAIL = "query($id: ID!) { execution(id: $id) { status startedAt } }"


async def test_priority_then_age_and_slot_release(server: Server) -> None:
    blocker = await start(server, definition=BLOCKER)
    await wait_for_status(server, blocker, {"RUNNING"})
    low_first = await start(server, definition=QUICK, priority=0)
    high = await start(server, definition=QUICK, priority=5)
    low_second = await start(server, definition=QUICK, priority=0)

    queue = (await execute(server, QUEUE))["queue"]
    # This process's runner is the one alive: work waits for its slot, not for a runner.
    assert queue == {
        "queued": 3,
        "running": 1,
        "slots": 1,
        "runnersAlive": 1,
        "runnerSlots": 1,
        "warning": None,
    }
    (runner,) = (await execute(server, "{ runners { pid slots } }"))["runners"]
    assert runner == {"pid": server.process.pid, "slots": 1}
    active = (await execute(server, "{ activeExecutions { id } }"))["activeExecutions"]
    assert [item["id"] for item in active] == [blocker]

    # Queued executions wait while the only slot is busy.
    await asyncio.sleep(0.5)
    assert (await execute(server, DETAIL, {"id": high}))["execution"]["status"] == "QUEUED"

    stopped = (await execute(server, STOP, {"id": blocker}))["stopExecution"]
    assert stopped["__typename"] == "StopExecutionSuccess"
    for execution_id in (high, low_first, low_second):
        await wait_for_status(server, execution_id, {"SUCCEEDED"})

    started = {
        execution_id: (await execute(server, DETAIL, {"id": execution_id}))["execution"][
            "startedAt"
        ]
        for execution_id in (high, low_first, low_second)
    }
    assert sorted(started, key=lambda key: started[key]) == [high, low_first, low_second]


async def test_stopping_a_queued_execution_cancels_it(server: Server) -> None:
    blocker = await start(server, definition=BLOCKER)
    await wait_for_status(server, blocker, {"RUNNING"})
    queued = await start(server, definition=QUICK)
    result = (await execute(server, STOP, {"id": queued, "reason": "not needed"}))["stopExecution"]
    assert result["execution"]["status"] == "CANCELLED"
    await execute(server, STOP, {"id": blocker})
    await wait_for_status(server, blocker, {"CANCELLED"})
