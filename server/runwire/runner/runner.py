"""Claim queued executions up to a number of slots, run them, and apply control requests.

The runner looks for work when the queue signals it (queue/signals.py: something was queued, a
control request was stored, a slot of its own came free) and, as a safety net, every poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from runwire.db.executions import ExecutionRepository
from runwire.domain.clock import utc_now
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus
from runwire.errors import RunwireError
from runwire.events.log import EventLog
from runwire.queue.signals import QueueSignals
from runwire.queue.store import ExecutionQueue
from runwire.runner.execution import ExecutionRun
from runwire.runner.steps.base import StepKind
from runwire.scenarios.definition import parse_definition
from runwire.settings import Settings

logger = logging.getLogger(__name__)


class Runner:
    """One per process; owns the executions it claimed through a renewed lease."""

    def __init__(
        self,
        queue: ExecutionQueue,
        executions: ExecutionRepository,
        log: EventLog,
        kinds: Mapping[str, StepKind[Any]],
        settings: Settings,
    ) -> None:
        self._queue = queue
        self._executions = executions
        self._log = log
        self._kinds = kinds
        self._settings = settings
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._runs: dict[str, ExecutionRun] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakeup = asyncio.Event()
        self._control_lock = asyncio.Lock()

    @property
    def slots(self) -> int:
        return self._settings.runner_slots

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        queue: ExecutionQueue,
        executions: ExecutionRepository,
        log: EventLog,
        signals: QueueSignals,
        kinds: Mapping[str, StepKind[Any]],
        settings: Settings,
    ) -> AsyncIterator[Runner]:
        """Claim and run, woken by queue signals, for the block; leaving it cancels every run."""
        runner = cls(queue, executions, log, kinds, settings)
        loop_task = asyncio.create_task(runner._loop(), name="runwire-runner")
        listening = asyncio.create_task(runner._listen(signals), name="runwire-runner-signals")
        try:
            yield runner
        finally:
            for task in (listening, loop_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await runner._cancel_all()

    def wake(self) -> None:
        """Look for queued executions and control requests now rather than at the next poll."""
        self._wakeup.set()

    async def _listen(self, signals: QueueSignals) -> None:
        async for _ in signals.listen():
            self.wake()

    async def _apply_controls(self) -> None:
        """Apply pending control requests for executions this runner owns."""
        async with self._control_lock:
            requests = await self._queue.pending_controls(self.owner)
            for request in requests:
                run = self._runs.get(request.execution_id)
                if run is None:
                    continue  # it ended meanwhile; the caller sees the end state
                if request.action == "stop":
                    run.stop(request.reason or "stopped")
                elif request.action == "pause":
                    run.pause(request.reason or "paused")
                elif request.action == "resume":
                    run.resume()
                elif request.action == "skip_step" and request.step_key is not None:
                    run.skip(request.step_key)
            for execution_id in {request.execution_id for request in requests}:
                await self._queue.mark_controls_handled(execution_id)
        await self._log.persisted()

    async def _loop(self) -> None:
        last_renewal = last_takeover = 0.0
        while True:
            try:
                await self._apply_controls()
                now = time.monotonic()
                if now - last_renewal > self._settings.lease_seconds / 3:
                    await self._queue.renew_leases(self.owner, self._settings.lease_seconds)
                    last_renewal = now
                if now - last_takeover > self._settings.lease_seconds:
                    await self._take_over_expired()
                    last_takeover = now
                free = self.slots - len(self._tasks)
                for execution in await self._queue.claim(
                    self.owner, free, self._settings.lease_seconds
                ):
                    await self._start(execution)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("runner: claim loop iteration failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.poll_seconds):
                    await self._wakeup.wait()
            self._wakeup.clear()

    async def _start(self, execution: Execution) -> None:
        # A resumed or retried execution continues from its stored step attempts.
        execution = replace(execution, steps=await self._executions.steps(execution.id))
        try:
            definition = parse_definition(execution.definition, self._kinds)
        except RunwireError as error:
            # Stored definitions were valid when started; a kind removed since is the
            # likely cause. The execution fails with the reason instead of blocking a slot.
            self._fail_unstartable(execution, error.message)
            return
        run = ExecutionRun(
            execution,
            definition,
            self._log,
            self._kinds,
            grace_seconds=execution.grace_seconds
            if execution.grace_seconds is not None
            else self._settings.grace_seconds,
            coalesce_seconds=self._settings.output_coalesce_ms / 1000,
        )
        self._runs[execution.id] = run
        self._tasks[execution.id] = asyncio.create_task(self._run(run), name=f"run-{execution.id}")

    async def _run(self, run: ExecutionRun) -> None:
        try:
            await run.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("runner: execution %s crashed", run.id)
        finally:
            self._runs.pop(run.id, None)
            self._tasks.pop(run.id, None)
            # Release the slot at once; the lease goes after the terminal event is persisted.
            self.wake()
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(run.id))

    async def _release(self, execution_id: str) -> None:
        await self._log.persisted()
        await self._queue.release(execution_id)

    def _fail_unstartable(self, execution: Execution, reason: str) -> None:
        self._log.append(
            Event(
                execution_id=execution.id,
                seq=execution.last_seq + 1,
                at=utc_now(),
                type=EventType.EXECUTION_STATUS,
                data={"status": ExecutionStatus.FAILED, "error": reason},
            )
        )
        asyncio.get_running_loop().create_task(self._release(execution.id))

    async def _take_over_expired(self) -> None:
        """Executions whose runner died: queued ones go back to the queue, running ones fail."""
        for execution in await self._queue.take_over_expired(
            self.owner, self._settings.lease_seconds
        ):
            if execution.id in self._runs:
                continue
            if execution.status in (ExecutionStatus.QUEUED, ExecutionStatus.PAUSED) or (
                execution.status.is_terminal
            ):
                await self._queue.release(execution.id)  # nothing was running
            else:
                self._fail_unstartable(execution, "its runner stopped (lease expired)")

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._log.persisted()
