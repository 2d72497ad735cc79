"""A stop asked for while the runner has given its execution up (its lease could not be renewed)
reaches the execution once the runner resumes it: it ends stopped, and does not run on.

Found by P7 (bench/capacity.py) at 10,000 running executions: renewals timed out, the runner gave
up 1,000 executions, their stop requests arrived meanwhile and were marked handled with no run
to apply them to, and the runner then resumed the executions, which ran on with no stop pending.

Held open with real parts, as in test_step_ended_at_give_up.py: the execution's row locked from
the test (FOR NO KEY UPDATE: the lease cannot be renewed, while a control request, which only
references the row, can still be stored). The first test stores the stop as `stopBatch` stores
it for an execution a runner holds (a control request, then a wake-up), as its decision to ask
the runner needs the row the test holds; the second asks with `stopExecution` before the row is
locked, so the stop reaches the run and the give-up cuts it short.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from tests.faults.test_step_ended_at_give_up import ACTOR, _core, _final, _start, _until
from tests.support import postgres

from runwire.core import Core
from runwire.domain.models import ExecutionStatus


@contextlib.asynccontextmanager
async def _lease_not_renewable(url: str, execution_id: str) -> AsyncIterator[None]:
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute(
                "SELECT 1 FROM runwire_execution WHERE id = $1 FOR NO KEY UPDATE", execution_id
            )
            yield
    finally:
        await connection.close()


def _given_up(core: Core, execution_id: str) -> bool:
    runner = core.runner
    assert runner is not None
    # White box: the run is over and the execution is held to be resumed.
    return execution_id not in runner._runs and execution_id in runner._abandoned


async def test_a_stop_asked_while_its_execution_is_given_up_stops_it_once_resumed(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"  # never created: the step runs until it is stopped
    script = f"until [ -e {gate} ]; do sleep 0.01; done"
    async with postgres.fresh_database() as url, _core(url, tmp_path / "data") as core:
        runner = core.runner
        assert runner is not None
        execution_id = await _start(core, script)
        await _until("running", lambda: execution_id in runner._runs)
        async with _lease_not_renewable(url, execution_id):
            await _until("given up", lambda: _given_up(core, execution_id))
            await core.store.queue.request_controls([execution_id], "stop", "enough", "test")
            runner.wake()
            # The lost stop needed one pass of the claim loop (every 0.05 s here) while the
            # execution was given up; give it several. Waiting longer cannot fail a runner
            # that keeps the request.
            await asyncio.sleep(0.5)
        final = await _final(core, execution_id)
    assert final.status is ExecutionStatus.CANCELLED
    assert final.error is not None
    assert "enough" in final.error


async def test_a_stop_cut_short_by_a_give_up_ends_the_resumed_execution(tmp_path: Path) -> None:
    """The stop reached the run, whose step ignores SIGINT for its 60 s grace period; the runner
    gave the execution up meanwhile. The give-up kills the step at once, grace or not (it must
    be gone before the lease can pass to another runner), and the run made again on resuming
    ends the execution stopped, without running the step again."""
    gate = tmp_path / "gate"
    script = f"trap '' INT; until [ -e {gate} ]; do sleep 0.01; done"
    async with postgres.fresh_database() as url, _core(url, tmp_path / "data") as core:
        runner = core.runner
        assert runner is not None
        execution_id = await _start(core, script, grace_seconds=60)
        await _until("running", lambda: execution_id in runner._runs)
        await core.control.stop(execution_id, "enough", ACTOR)
        await _until(
            "stopping",
            lambda: (
                execution_id in runner._runs and runner._runs[execution_id].stop_reason is not None
            ),
        )
        async with _lease_not_renewable(url, execution_id):
            await _until("given up", lambda: _given_up(core, execution_id))
        final = await _final(core, execution_id)
    # Ended by the stop: its step's SIGINT-deaf process was killed at the give-up (not after its
    # 60 s grace) and not started again.
    assert final.status is ExecutionStatus.CANCELLED
    assert final.error is not None
    assert final.error.startswith("stopped")
    assert [step.attempt for step in final.steps] == [1]
