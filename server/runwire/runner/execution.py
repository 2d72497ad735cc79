"""Run one claimed execution: its steps as a graph, as the single writer of its events.

A run continues from what is stored: steps whose latest attempt succeeded or was skipped (or
failed with continue_on_failure) are done, and the others run, as new attempts, once the steps
they need are done. So one class serves a fresh start, a resume, a retry and a skip, and the
resumption of an execution whose runner was lost: the attempt that runner left RUNNING is
recorded as failed, then retried or not by the step's `on_runner_lost`.

A run can also end without its execution ending. Handed over (its server drains), it starts no
new step and, once the running ones end, queues the execution again for another runner.
Abandoned (its runner can no longer renew the lease), it stops its steps at once and writes
nothing more: whoever takes the lease over resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from runwire import logs
from runwire.domain.agents import AgentEntry, Priced, Usage, UsageTotals
from runwire.domain.artifacts import ArtifactStore, check_artifact, is_text
from runwire.domain.calls import CallEvent
from runwire.domain.clock import utc_now
from runwire.domain.models import (
    Event,
    EventType,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    OutputStream,
    StepRun,
    StepStatus,
    duration_between,
)
from runwire.domain.reviews import ReviewOutcome
from runwire.errors import RunwireError
from runwire.events.log import EventLog, Ownership
from runwire.faults import is_outage
from runwire.metrics import Metrics
from runwire.runner.output import OutputCoalescer
from runwire.runner.output_budget import (
    OUTPUT_ARTIFACT,
    ExecutionOutput,
    OutputBudget,
    OutputLimits,
    OutputSpool,
)
from runwire.runner.pricing import PriceTable
from runwire.runner.redaction import Redactor, StreamRedactor
from runwire.runner.spans import span_event_data
from runwire.runner.steps.base import StepKind, StepResult
from runwire.runner.usage import UsageLedger, attributes_of
from runwire.scenarios.definition import Definition, OnFailure, OnRunnerLost, StepSpec
from runwire.scenarios.expectations import assess
from runwire.scenarios.limits import storable_result
from runwire.scenarios.templating import render
from runwire.settings import DEFAULT_ARTIFACT_MAX_BYTES

logger = logging.getLogger(__name__)

SHUTDOWN_REASON = "server shutting down"
RUNNER_LOST = "runner lost"
_FAILED = (StepStatus.FAILED, StepStatus.TIMED_OUT)
# A text artifact at least this large is redacted in a worker thread.
_ON_LOOP_REDACTION_BYTES = 1024 * 1024

LoadSecrets = Callable[[str, Sequence[str]], Awaitable[dict[str, str]]]
"""(workspace, names) -> the values of those secrets the workspace has."""


@dataclass(frozen=True, slots=True)
class _Ended:
    """How this run ends: a terminal status, or PAUSED (the execution continues later)."""

    status: ExecutionStatus
    error: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: StepStatus
    error: str | None
    # Seconds until the next attempt, when the step failed and will be retried.
    retry_in: float | None = None


@dataclass(slots=True)
class _Active:
    """A step being run: its kind's task, and why it was cancelled if it was."""

    step: StepSpec
    kind_task: asyncio.Task[StepResult] | None = None
    context: _StepContext | None = None
    # Killed because the run was abandoned: its end is not recorded (see ExecutionRun.abandon).
    killed: bool = False
    cancelled_because: str | None = None
    # Set on cancel, so a wait between retries ends at once instead of sleeping on.
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    # The budget it (or the execution) crossed: it fails with this, and is not retried.
    over_budget: str | None = None


@dataclass(slots=True)
class _Asked:
    """A review step waiting in this run: decided through `decided` (its outcome and output)."""

    active: _Active
    attempt: int
    decided: asyncio.Future[tuple[_Outcome, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(slots=True)
class _StepContext:
    run: ExecutionRun
    execution_id: str
    step_key: str
    attempt: int
    grace_seconds: float
    coalescer: OutputCoalescer
    redaction: StreamRedactor
    output_budget: OutputBudget
    active: _Active
    secrets: Mapping[str, str] = field(default_factory=dict)
    # What this attempt's model calls and agent runs consumed so far.
    usage_so_far: UsageTotals = field(default_factory=UsageTotals)
    # The whole output, kept as an artifact if a budget truncates it (RUNWIRE_OUTPUT_ARTIFACT).
    spool: OutputSpool | None = None

    def output(self, stream: OutputStream, text: str) -> None:
        # Redaction first: whatever comes after (budgets, coalescing) sees no secret value.
        text = self.redaction.feed(stream, text)
        if text:
            self._pass(stream, text)

    def end_output(self) -> None:
        """The step ended: let go of what redaction held back, then of the coalesced rest."""
        for stream, text in self.redaction.flush():
            self._pass(stream, text)
        self.coalescer.flush()

    def _pass(self, stream: OutputStream, text: str) -> None:
        if self.spool is not None:
            self.spool.write(stream, text)
        self.output_budget.write(stream, text)  # on to the coalescer, within the budgets

    def entry(self, entry: AgentEntry) -> None:
        # Output recorded before the entry stays before it: the coalescer lets go of it now.
        self.coalescer.flush()
        data = self.run.redactor.value(bounded_entry(entry.event_data()))
        self.run.emit(EventType.AGENT_ENTRY, data, self.step_key, self.attempt)

    def call(self, event: CallEvent) -> None:
        self.coalescer.flush()
        data = self.run.redactor.value(event.event_data())
        self.run.emit(EventType.CALL, data, self.step_key, self.attempt)

    def usage(self, usage: Usage) -> Priced:
        return self.run.record_usage(self, usage)

    async def artifact(self, name: str, media_type: str, content: bytes) -> None:
        await self.run.store_artifact(self, name, media_type, content)

    def backlogged(self) -> bool:
        return self.run.log.backlogged(self.execution_id)

    async def room(self) -> None:
        await self.run.log.room(self.execution_id)

    def span(
        self,
        name: str,
        kind: str,
        started_at: datetime,
        finished_at: datetime,
        status: str,
        attributes: Mapping[str, Any],
        parent_id: str | None = None,
        span_id: str | None = None,
    ) -> str:
        data = span_event_data(
            name, kind, started_at, finished_at, status, attributes, parent_id, span_id
        )
        data = self.run.redactor.value(data)
        self.run.emit(EventType.SPAN, data, self.step_key, self.attempt)
        return str(data["span_id"])


@dataclass(slots=True)
class _Progress:
    """What the graph walk knows: finished steps' outputs and each step's next attempt."""

    scope: dict[str, Any] = field(default_factory=dict)
    next_attempt: dict[str, int] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)


class ExecutionRun:
    """Assigns seqs (continuing from the row's last_seq) to everything it emits."""

    def __init__(
        self,
        execution: Execution,
        definition: Definition,
        log: EventLog,
        kinds: Mapping[str, StepKind[Any]],
        grace_seconds: float,
        coalesce_seconds: float,
        ownership: Ownership | None = None,
        lost_runner: str | None = None,
        load_secrets: LoadSecrets | None = None,
        output_limits: OutputLimits | None = None,
        prices: PriceTable | None = None,
        server_secrets: Iterable[str] = (),
        artifacts: ArtifactStore | None = None,
        artifact_max_bytes: int = DEFAULT_ARTIFACT_MAX_BYTES,
        metrics: Metrics | None = None,
    ) -> None:
        self.execution = execution
        self._metrics = metrics or Metrics()
        self._artifacts = artifacts
        self._artifact_max_bytes = artifact_max_bytes
        self._load_secrets = load_secrets
        # The values of every secret given to a step of this run so far, masked in all of them.
        self.redactor = Redactor()
        # Values of the server's own that a step may use but must never show (LLM API keys).
        self.redactor.add(server_secrets)
        self.ownership = ownership
        # The owner whose runner was lost, when this run resumes after it.
        self._lost_runner = lost_runner
        self._definition = definition
        self.log = log
        self._kinds = kinds
        self._grace = grace_seconds
        self._coalesce_seconds = coalesce_seconds
        self._output_limits = output_limits or OutputLimits()
        self._output = ExecutionOutput()
        self.usage = UsageLedger(prices or PriceTable.load(), definition.budget, execution.steps)
        # The definition's budget, once the execution crossed it: it fails with this.
        self._over_budget: str | None = None
        self._seq = execution.last_seq
        self.stop_reason: str | None = None
        self._pause_reason: str | None = None
        self._handover_reason: str | None = None
        self.abandoned: str | None = None
        self._interrupted: list[StepSpec] = []
        self._active: dict[str, _Active] = {}
        self._asked: dict[str, _Asked] = {}
        self._changed = asyncio.Event()
        self._timeout: asyncio.Timeout | None = None
        self._timed_out_steps: list[str] = []
        self._selected = self._selected_steps()
        self._progress = self._progress_so_far()
        # `review` steps waiting for their decision: nothing that needs them can start.
        self._waiting = {
            key
            for key, run in execution.latest_attempts().items()
            if run.status is StepStatus.WAITING
        }
        self._pending = [
            step
            for step in self._selected
            if step.key not in self._progress.done and step.key not in self._waiting
        ]

    @property
    def id(self) -> str:
        return self.execution.id

    def emit(
        self,
        type: EventType,
        data: Mapping[str, Any],
        step_key: str | None = None,
        attempt: int | None = None,
        at: datetime | None = None,
    ) -> Event:
        self._seq += 1
        event = Event(
            execution_id=self.execution.id,
            seq=self._seq,
            at=at or utc_now(),
            type=type,
            data=data,
            step_key=step_key,
            attempt=attempt,
        )
        self.log.append(event)
        return event

    # ---- control, applied by the runner -----------------------------------------------

    def stop(self, reason: str) -> bool:
        """Move to STOPPING and cancel running steps (SIGINT, grace, SIGKILL for processes)."""
        if self.stop_reason is not None:
            return False
        self.stop_reason = reason
        self.emit(
            EventType.EXECUTION_STATUS, {"status": ExecutionStatus.STOPPING, "reason": reason}
        )
        for active in self._active.values():
            self._cancel(active, f"stopped: {reason}")
        self._changed.set()
        return True

    def pause(self, reason: str) -> bool:
        """PAUSING now; PAUSED once the running steps end (no new step starts meanwhile)."""
        if self.stop_reason is not None or self._pause_reason is not None:
            return False
        self._pause_reason = reason
        self.emit(EventType.EXECUTION_STATUS, {"status": ExecutionStatus.PAUSING, "reason": reason})
        self._changed.set()
        return True

    def resume(self) -> bool:
        """Withdraw a pause that has not taken effect yet."""
        if self.stop_reason is not None or self._pause_reason is None:
            return False
        self._pause_reason = None
        self.emit(EventType.EXECUTION_STATUS, {"status": ExecutionStatus.RUNNING})
        self._changed.set()
        return True

    def hand_over(self, reason: str) -> None:
        """Start no new step; once the running ones end, queue the execution for another runner."""
        if self.stop_reason is None and self._handover_reason is None:
            self._handover_reason = reason
            self._changed.set()

    def interrupt(self) -> None:
        """Cancel the running steps of a run being handed over (SIGINT, grace, SIGKILL)."""
        for active in self._active.values():
            self._cancel(active, f"interrupted: {self._handover_reason or SHUTDOWN_REASON}")

    def abandon(self, reason: str) -> None:
        """Kill the running steps at once (no grace) and end without ending the execution.

        A killed step's attempt stays RUNNING in the store: whoever resumes the execution
        records it as lost. A step that already completed on its own still records its end, so
        no finished step is run again.
        """
        if self.abandoned is not None:
            return
        logger.error("execution %s abandoned by its runner: %s", self.execution.id, reason)
        self.abandoned = reason
        for active in self._active.values():
            if active.kind_task is not None and active.kind_task.done():
                continue  # completed on its own: it records its end
            if active.kind_task is not None:
                active.killed = True
                if active.context is not None:
                    active.context.grace_seconds = 0.0
            self._cancel(active, f"abandoned: {reason}")  # also ends a wait between attempts
        self._changed.set()

    def skip(self, step_key: str) -> bool:
        """Mark a step that has not started (or a review waiting) SKIPPED; its dependents may
        then run."""
        if (asked := self._asked.get(step_key)) is not None and not asked.decided.done():
            review = asked.active.step
            data = {
                "status": StepStatus.SKIPPED,
                "kind": review.kind,
                "position": review.position,
                "reason": "skipped by request",
            }
            self.emit(EventType.STEP_STATUS, data, step_key, asked.attempt)
            asked.decided.set_result((_Outcome(StepStatus.SKIPPED, None), None))
            return True
        step = next((s for s in self._pending if s.key == step_key), None)
        if step is None or step_key in self._active:
            return False
        self._pending.remove(step)
        attempt = self._progress.next_attempt[step_key]
        self.emit(
            EventType.STEP_STATUS,
            {
                "status": StepStatus.SKIPPED,
                "kind": step.kind,
                "position": step.position,
                "reason": "skipped by request",
            },
            step_key,
            attempt,
        )
        _record(self._progress, step, StepStatus.SKIPPED, None)
        self._changed.set()
        return True

    def record_usage(self, context: _StepContext, usage: Usage) -> Priced:
        """Price and add what a step reported; stop whatever crossed a budget."""
        active = context.active
        context.usage_so_far, recorded = self.usage.record(
            context.step_key, active.step.budget, context.usage_so_far, usage
        )
        context.coalescer.flush()
        self.emit(EventType.USAGE, recorded.event_data, context.step_key, context.attempt)
        self._metrics.usage_reported(
            self.execution.scenario_name, usage.input, usage.output, recorded.priced.cost_usd
        )
        if recorded.step_over_budget is not None and active.over_budget is None:
            active.over_budget = recorded.step_over_budget
            self._cancel(active, recorded.step_over_budget)
        if recorded.execution_over_budget is not None and self._over_budget is None:
            self._over_budget = recorded.execution_over_budget
            for other in self._active.values():
                other.over_budget = other.over_budget or recorded.execution_over_budget
                self._cancel(other, recorded.execution_over_budget)
            self._changed.set()
        return recorded.priced

    async def store_artifact(
        self, context: _StepContext, name: str, media_type: str, content: bytes
    ) -> None:
        """Check and store an artifact of the step's attempt, its text redacted, now."""
        check_artifact(name, media_type, len(content), self._artifact_max_bytes)
        if self._artifacts is None:
            raise RunwireError("artifacts are not stored by this runner")
        if self.redactor and is_text(media_type):
            # A large text is scanned off the event loop, which every execution shares.
            large = len(content) >= _ON_LOOP_REDACTION_BYTES
            redact = self.redactor.content
            content = await asyncio.to_thread(redact, content) if large else redact(content)
        generation = None if self.ownership is None else self.ownership.lease.generation
        # Straight to the database, not through the event log: content may be megabytes, and
        # the step learns here, not later, whether it was kept.
        stored = await self._artifacts.put_artifact(
            self.execution.id,
            context.step_key,
            context.attempt,
            name,
            media_type,
            content,
            utc_now(),
            generation,
        )
        if stored is None:
            raise RunwireError(f"artifact {name} not stored: this runner no longer holds the run")

    # ---- the run -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run to a terminal (or PAUSED) event, or hand the execution over (QUEUED) while the
        server drains; a shutdown that cannot wait still ends it CANCELLED."""
        if self._lost_runner is not None:
            ended = self._recover_lost_attempts()
            if ended is not None:
                self._emit_end(ended, self.execution.started_at)
                return
        if self.stop_reason is not None or self._pause_reason is not None:
            # Stopped or paused between the claim and the first step: nothing ran.
            ended = (
                _Ended(ExecutionStatus.CANCELLED, f"stopped: {self.stop_reason}")
                if self.stop_reason is not None
                else _Ended(ExecutionStatus.PAUSED, reason=self._pause_reason)
            )
            self._emit_end(ended, self.execution.started_at)
            return
        running = self.emit(
            EventType.EXECUTION_STATUS,
            {"status": ExecutionStatus.RUNNING}
            if self._lost_runner is None
            else {"status": ExecutionStatus.RUNNING, "reason": f"resumed: {RUNNER_LOST}"},
        )
        started_at = self.execution.started_at or running.at
        # Each run gets the whole budget: a retried TIMED_OUT execution must be able to finish.
        seconds = self.execution.timeout_seconds or self._definition.timeout
        ended = _Ended(ExecutionStatus.FAILED, "execution ended without a result")
        try:
            async with asyncio.timeout(seconds) as self._timeout:
                ended = await self._run_graph()
        except TimeoutError:
            assert seconds is not None
            during = ""
            if self._timed_out_steps:
                during = f" during step {', '.join(self._timed_out_steps)}"
            ended = _Ended(
                ExecutionStatus.TIMED_OUT, f"execution timed out after {seconds:g}s{during}"
            )
        except asyncio.CancelledError:
            ended = _Ended(ExecutionStatus.CANCELLED, SHUTDOWN_REASON)
            raise
        finally:
            self._emit_end(ended, started_at)

    def _recover_lost_attempts(self) -> _Ended | None:
        """Record the attempts the lost runner left RUNNING as failed; how the run ends now,
        if a step's `on_runner_lost` (or a stop or pause it left pending) decides it."""
        lost: list[StepSpec] = []
        steps = {step.key: step for step in self._selected}
        for key, run in self.execution.latest_attempts().items():
            if run.status is not StepStatus.RUNNING or key not in steps:
                continue
            step = steps[key]
            lost.append(step)
            self.emit(
                EventType.STEP_STATUS,
                {
                    "status": StepStatus.FAILED,
                    "kind": step.kind,
                    "position": step.position,
                    "error": f"its runner was lost ({self._lost_runner})",
                    "reason": RUNNER_LOST,
                },
                key,
                run.attempt,
            )
        failing = [step.key for step in lost if step.on_runner_lost is OnRunnerLost.FAIL]
        if self.execution.status is ExecutionStatus.STOPPING:
            return _Ended(ExecutionStatus.CANCELLED, f"stopped; {RUNNER_LOST} while stopping")
        if failing:
            return _Ended(
                ExecutionStatus.FAILED,
                f"step {', '.join(failing)} interrupted: {RUNNER_LOST} (on_runner_lost: fail)",
            )
        if self.execution.status is ExecutionStatus.PAUSING:
            return _Ended(ExecutionStatus.PAUSED, reason=f"paused; {RUNNER_LOST} while pausing")
        return None

    def _emit_end(self, ended: _Ended, started_at: datetime | None) -> None:
        if self.abandoned is not None:
            return  # not ended: whoever resumes it decides how it goes on
        data: dict[str, Any] = {"status": ended.status}
        if ended.error:
            data["error"] = ended.error
        if ended.reason:
            data["reason"] = ended.reason
        at = utc_now()
        if ended.status.is_terminal:
            data["duration_ms"] = duration_between(started_at, at)
            self._metrics.execution_ended(self.execution.scenario_name, ended.status)
        self.emit(EventType.EXECUTION_STATUS, data, at=at)
        logger.info("execution %s", ended.status.value.lower())

    async def _run_graph(self) -> _Ended:
        tasks: dict[asyncio.Task[_Outcome], _Active] = {}
        failure: _Ended | None = None
        paused_on: _Ended | None = None
        try:
            while True:
                if (
                    self.stop_reason is None
                    and self._pause_reason is None
                    and self._handover_reason is None
                    and self.abandoned is None
                    and self._over_budget is None
                    and not (failure or paused_on)
                ):
                    self._launch_ready(tasks)
                self._park_reviews(tasks)
                if not tasks:
                    break
                await self._wait_for_change(tasks)
                for task in [task for task in tasks if task.done()]:
                    active = tasks.pop(task)
                    del self._active[active.step.key]
                    ended = self._settle(active, task.result())
                    if ended is None:
                        continue
                    if ended.status is ExecutionStatus.PAUSED:
                        paused_on = paused_on or ended
                    elif failure is None:
                        failure = ended
                        for other in self._active.values():
                            self._cancel(other, f"cancelled: step {active.step.key} failed")
        finally:
            if tasks:
                await self._abort(tasks)
        if self.stop_reason is not None:
            return _Ended(ExecutionStatus.CANCELLED, f"stopped: {self.stop_reason}")
        if self._over_budget is not None:
            return _Ended(ExecutionStatus.FAILED, self._over_budget)
        if failure is not None:
            return failure
        if paused_on is not None:
            return paused_on
        if self._handover_reason is not None and (self._pending or self._interrupted):
            return self._handover_end()
        if self._pending and self._pause_reason is not None:
            return _Ended(ExecutionStatus.PAUSED, reason=self._pause_reason)
        if self._waiting:
            # Its runner lets it go: the decision (or the review's timeout) queues it again.
            waiting = ", ".join(sorted(self._waiting))
            return _Ended(ExecutionStatus.WAITING, reason=f"waiting for review of step {waiting}")
        if self._pending:
            left = ", ".join(step.key for step in self._pending)
            return _Ended(ExecutionStatus.FAILED, f"steps could not run: {left}")
        return _Ended(ExecutionStatus.SUCCEEDED)

    def _handover_end(self) -> _Ended:
        """Queued again for another runner, unless an interrupted step must not run twice."""
        failing = [s.key for s in self._interrupted if s.on_runner_lost is OnRunnerLost.FAIL]
        reason = self._handover_reason or SHUTDOWN_REASON
        if failing:
            return _Ended(
                ExecutionStatus.FAILED,
                f"step {', '.join(failing)} interrupted: {reason} (on_runner_lost: fail)",
            )
        return _Ended(ExecutionStatus.QUEUED, reason=f"handed over: {reason}")

    async def _wait_for_change(self, tasks: dict[asyncio.Task[_Outcome], _Active]) -> None:
        """Until a step ends or a control (skip, stop, pause, resume) changes what may start."""
        self._changed.clear()
        changed = asyncio.create_task(self._changed.wait())
        try:
            await asyncio.wait([*tasks, changed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()

    def _launch_ready(self, tasks: dict[asyncio.Task[_Outcome], _Active]) -> None:
        for step in list(self._pending):
            # A review waiting for people takes no share of the parallelism.
            if len(tasks) - len(self._asked) >= self._definition.parallelism:
                return
            if not self._is_ready(step):
                continue
            self._pending.remove(step)
            active = _Active(step)
            self._active[step.key] = active
            task = asyncio.create_task(self._attempts(active), name=f"step-{step.key}")
            tasks[task] = active

    def _is_ready(self, step: StepSpec) -> bool:
        if self.execution.mode is not ExecutionMode.FULL:
            return True  # the test-panel modes run one step, its needs supplied or absent
        return all(need in self._progress.done for need in step.needs)

    def _settle(self, active: _Active, outcome: _Outcome) -> _Ended | None:
        """Record a step's final outcome; return how the execution ends if this decides it."""
        step = active.step
        if outcome.status is StepStatus.SUCCEEDED:
            return None
        if outcome.status is StepStatus.WAITING:
            self._waiting.add(step.key)
            return None
        if outcome.status is StepStatus.CANCELLED:
            if self._handover_reason is not None and self.stop_reason is None:
                self._interrupted.append(step)  # the next runner decides, by on_runner_lost
            return None  # by stop or by another step's failure, which decide the end
        if step.continue_on_failure:
            return None
        error = f"step {step.key} failed: {outcome.error}"
        if step.on_failure is OnFailure.PAUSE:
            return _Ended(ExecutionStatus.PAUSED, error=error, reason=f"step {step.key} failed")
        if outcome.status is StepStatus.TIMED_OUT:
            return _Ended(ExecutionStatus.TIMED_OUT, f"step {step.key}: {outcome.error}")
        return _Ended(ExecutionStatus.FAILED, error)

    async def _abort(self, tasks: dict[asyncio.Task[_Outcome], _Active]) -> None:
        """Cancel running steps because the execution timed out or the server shuts down."""
        timed_out = self._timeout is not None and self._timeout.expired()
        self._timed_out_steps = [active.step.key for active in tasks.values()]
        for task, active in tasks.items():
            active.cancelled_because = (
                "execution timed out" if timed_out else active.cancelled_because or SHUTDOWN_REASON
            )
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._active.clear()

    def _cancel(self, active: _Active, because: str) -> None:
        if active.cancelled_because is not None:
            return
        active.cancelled_because = because
        active.cancelled.set()
        if active.kind_task is not None:
            active.kind_task.cancel()

    # ---- one step: attempts with retries ------------------------------------------------

    async def _attempts(self, active: _Active) -> _Outcome:
        step = active.step
        logs.step.set(step.key)  # this step's task only: see logs.py
        first = attempt = self._progress.next_attempt[step.key]
        if getattr(self._kinds[step.kind], "waits_for_people", False):
            outcome = self._ask_for_review(step, attempt)
            output = None
            if outcome.status is StepStatus.WAITING:
                outcome, output = await self._await_review(active, attempt)
            if outcome.status is not StepStatus.WAITING:
                self._progress.next_attempt[step.key] = attempt + 1
                _record(self._progress, step, outcome.status, StepResult(output, outcome.error))
            return outcome
        while True:
            retry_in = None
            if step.retries is not None and attempt - first < step.retries.max:
                retry_in = step.retries.delay_before(attempt - first + 2)
            outcome, result = await self._attempt(active, attempt, retry_in)
            if outcome.retry_in is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(outcome.retry_in):
                        await active.cancelled.wait()
                if active.cancelled_because is not None or self.abandoned is not None:
                    break
                attempt += 1
                continue
            self._progress.next_attempt[step.key] = attempt + 1
            _record(self._progress, step, outcome.status, result)
            return outcome
        return _Outcome(StepStatus.CANCELLED, active.cancelled_because)

    def _ask_for_review(self, step: StepSpec, attempt: int) -> _Outcome:
        """Store the rendered request as the attempt's WAITING event, or fail the attempt if
        it does not render to a valid one."""
        path = f"steps[{step.position}].with"
        scope = {"inputs": self.execution.inputs, "steps": self._progress.scope}
        try:
            request = self._kinds[step.kind].parse(render(step.with_, scope, path), path).request()
        except RunwireError as error:
            failed = StepResult(error=error.message)
            ended = _step_end_data(step, StepStatus.FAILED, failed, [], None)
            self.emit(EventType.STEP_STATUS, ended, step.key, attempt)
            return _Outcome(StepStatus.FAILED, error.message)
        data: dict[str, Any] = {
            "status": StepStatus.WAITING,
            "kind": step.kind,
            "position": step.position,
            "review": self.redactor.value(request),
        }
        if step.timeout is not None:
            expires = utc_now() + timedelta(seconds=step.timeout)
            data["expires_at"] = expires.isoformat()
        self.emit(EventType.STEP_STATUS, data, step.key, attempt)
        return _Outcome(StepStatus.WAITING, None)

    async def _await_review(self, active: _Active, attempt: int) -> tuple[_Outcome, Any]:
        """While other steps run, the review may be decided here (decide_review); once only
        reviews are left, the run parks it (WAITING) and the execution is let go."""
        step = active.step
        asked = self._asked[step.key] = _Asked(active, attempt)
        self._changed.set()  # the graph walk looks whether only reviews are left
        cancelled = asyncio.create_task(active.cancelled.wait())
        either: list[asyncio.Future[Any]] = [asked.decided, cancelled]
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The execution timed out, or a shutdown could not wait: it ends, and so does
            # the review, unanswered.
            self._close_unanswered(asked, active.cancelled_because or SHUTDOWN_REASON)
            raise
        finally:
            cancelled.cancel()
            del self._asked[step.key]
        if asked.decided.done():
            return asked.decided.result()
        because = active.cancelled_because or "cancelled"
        if self._handover_reason is not None and self.stop_reason is None:
            return _Outcome(StepStatus.WAITING, None), None  # open still, for the next runner
        # Stopped, or another step failed: the review closes unanswered.
        self._close_unanswered(asked, because)
        return _Outcome(StepStatus.CANCELLED, because), None

    def _close_unanswered(self, asked: _Asked, because: str) -> None:
        if self.abandoned is not None:
            return  # whoever resumes the execution decides how it goes on
        step = asked.active.step
        data = {
            "status": StepStatus.CANCELLED,
            "kind": step.kind,
            "position": step.position,
            "error": because,
        }
        self.emit(EventType.STEP_STATUS, data, step.key, asked.attempt)

    def decide_review(self, step_key: str, request: str) -> bool:
        """Close a review this run waits for, as a control request says (submitReview or its
        timeout while other steps run); False if it no longer waits."""
        asked = self._asked.get(step_key)
        try:
            attempt, outcome = ReviewOutcome.of_request(request)
        except (ValueError, KeyError, TypeError):
            logger.error("runner: a malformed review decision for step %s was ignored", step_key)
            return False
        if asked is None or asked.attempt != attempt or asked.decided.done():
            return False
        step = asked.active.step
        self.emit(
            EventType.STEP_STATUS, outcome.step_data(step.kind, step.position), step_key, attempt
        )
        asked.decided.set_result((_Outcome(outcome.step_status, outcome.error), outcome.output))
        return True

    def _park_reviews(self, tasks: Mapping[asyncio.Task[_Outcome], _Active]) -> None:
        """Once every running step is a review waiting for people, let them wait without this
        run: each ends as WAITING, and so does the run (see _run_graph)."""
        if not tasks or any(active.step.key not in self._asked for active in tasks.values()):
            return
        for asked in self._asked.values():
            if not asked.decided.done():
                asked.decided.set_result((_Outcome(StepStatus.WAITING, None), None))

    async def _attempt(
        self, active: _Active, attempt: int, retry_in: float | None
    ) -> tuple[_Outcome, StepResult]:
        step = active.step
        key = step.key
        kind = self._kinds[step.kind]
        self.emit(
            EventType.STEP_STATUS,
            {"status": StepStatus.RUNNING, "kind": step.kind, "position": step.position},
            key,
            attempt,
        )
        began = time.monotonic()

        def write_output(stream: OutputStream, text: str, at: datetime) -> None:
            self.emit(EventType.OUTPUT, {"stream": stream, "text": text}, key, attempt, at)

        coalescer = OutputCoalescer(write_output, self._coalesce_seconds)

        def truncated(data: Mapping[str, Any]) -> None:
            coalescer.flush()  # what was kept goes out before the mark
            self.emit(EventType.OUTPUT_TRUNCATED, data, key, attempt)

        budget = OutputBudget(self._output_limits, self._output, coalescer.write, truncated)
        context = _StepContext(
            self,
            self.execution.id,
            key,
            attempt,
            self._grace,
            coalescer,
            StreamRedactor(self.redactor),
            budget,
            active,
        )
        if self._output_limits.save_artifact and self._artifacts is not None:
            context.spool = OutputSpool(self._artifact_max_bytes)
        active.context = context
        interrupted = False
        status = StepStatus.FAILED
        result = StepResult(error="step ended without a result")
        assertions: list[dict[str, Any]] = []
        try:
            path = f"steps[{step.position}].with"
            scope = {"inputs": self.execution.inputs, "steps": self._progress.scope}
            params = kind.parse(render(step.with_, scope, path), path)
            context.secrets = await self._secrets_of(step)
            active.kind_task = asyncio.create_task(kind.run(params, context))
            async with asyncio.timeout(step.timeout):
                result = await self._await_kind(active)
            # It completed, even if abandoning the run asked it to stop: its end is recorded.
            active.killed = False
            result, assertions = assess(step.expect, step.kind, _with_usage(result, context))
            if active.over_budget is not None:
                # The usage that crossed a budget came as the step ended, before the cancel could
                # reach it (an agent's result, then its exit): it fails all the same, output kept.
                result = dataclasses.replace(result, error=active.over_budget)
            status = StepStatus.SUCCEEDED if result.error is None else StepStatus.FAILED
        except _Cancelled:
            if active.over_budget is not None:
                status, result = StepStatus.FAILED, StepResult(error=active.over_budget)
            else:
                status, result = StepStatus.CANCELLED, StepResult(error=active.cancelled_because)
        except TimeoutError:
            status = StepStatus.TIMED_OUT
            result = StepResult(error=f"step timed out after {step.timeout:g}s")
        except asyncio.CancelledError:
            because = active.cancelled_because or SHUTDOWN_REASON
            status = (
                StepStatus.TIMED_OUT if because == "execution timed out" else StepStatus.CANCELLED
            )
            result = StepResult(error=because)
            interrupted = True
            raise
        except RunwireError as error:
            result = StepResult(error=error.message)
        except Exception as error:
            # A defect in a step kind fails this step, never the runner. Its message may hold a
            # secret value: the traceback is logged redacted.
            logger.error(
                "step %s of execution %s crashed:\n%s",
                key,
                self.execution.id,
                self.redactor.text("".join(traceback.format_exception(error))),
            )
            result = StepResult(error=f"internal error in step kind {step.kind}: {error!r}")
        finally:
            if usage := attributes_of(context.usage_so_far):
                result = dataclasses.replace(result, attributes={**result.attributes, **usage})
            result = storable_result(result)  # its error goes to a text column (Postgres)
            active.kind_task = None
            context.end_output()
            result = self.redactor.result(result)
            assertions = self.redactor.value(assertions)
            if status not in _FAILED or active.over_budget is not None or not result.retryable:
                retry_in = None
            elif retry_in is not None and step.retries is not None:
                retry_in = _retry_wait(retry_in, result.retry_after, step.retries.max_delay)
            if not active.killed:
                budget.close()
                if budget.dropped_bytes and context.spool is not None and not interrupted:
                    await self._keep_whole_output(context)
                self.emit(
                    EventType.STEP_STATUS,
                    _step_end_data(step, status, result, assertions, retry_in),
                    key,
                    attempt,
                )
                self._metrics.step_attempt_ended(step.kind, status, time.monotonic() - began)
            if context.spool is not None:
                context.spool.close()
        return _Outcome(status, result.error, retry_in), result

    async def _keep_whole_output(self, context: _StepContext) -> None:
        """Store what a budget truncated, whole, as the attempt's artifact OUTPUT_ARTIFACT."""
        assert context.spool is not None
        spool = context.spool
        try:
            content = await asyncio.to_thread(spool.content)
            media_type = "text/plain; charset=utf-8"
            await self.store_artifact(context, OUTPUT_ARTIFACT, media_type, content)
        except Exception as error:  # the step's own result stands; the log says what was lost
            message = error.message if isinstance(error, RunwireError) else repr(error)
            said = f"whole output not kept as artifact {OUTPUT_ARTIFACT}: {message}"
        else:
            said = f"whole output ({spool.kept_bytes:,} bytes) kept as artifact {OUTPUT_ARTIFACT}"
            if spool.over_bytes:
                said += f", less its last {spool.over_bytes:,} bytes (over the artifact limit)"
        log = {"stream": OutputStream.LOG, "text": said + "\n"}
        self.emit(EventType.OUTPUT, log, context.step_key, context.attempt)

    async def _secrets_of(self, step: StepSpec) -> dict[str, str]:
        """The values of the secrets the step names, read now (a set since the start counts)."""
        if not step.secrets:
            return {}
        found: dict[str, str] = {}
        if self._load_secrets is not None:
            try:
                found = await self._load_secrets(self.execution.workspace_id, step.secrets)
            except Exception as error:
                if not is_outage(error):
                    raise
                raise RunwireError(
                    "its secrets could not be read: the database is out of reach"
                ) from None
        self.redactor.add(found.values())
        missing = [name for name in step.secrets if name not in found]
        if missing:
            raise RunwireError(f"secret {', '.join(missing)} is not set in this workspace")
        return {name: found[name] for name in step.secrets}

    async def _await_kind(self, active: _Active) -> StepResult:
        assert active.kind_task is not None
        try:
            return await active.kind_task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            # Only the kind's task was cancelled (stop, or another step failed), not this one
            # (a timeout or shutdown cancels this task and the kind's with it).
            if active.cancelled_because is not None and current and not current.cancelling():
                raise _Cancelled() from None
            raise

    # ---- progress ------------------------------------------------------------------------

    def _selected_steps(self) -> list[StepSpec]:
        if self.execution.mode is ExecutionMode.FULL:
            return list(self._definition.steps)
        return [step for step in self._definition.steps if step.key == self.execution.step_key]

    def _progress_so_far(self) -> _Progress:
        progress = _Progress()
        if self.execution.mode is ExecutionMode.STEP_IN_CONTEXT:
            for key, output in (self.execution.upstream or {}).items():
                progress.scope[key] = {"output": output, "exit_code": None, "status": "SUCCEEDED"}
        latest: dict[str, StepRun] = self.execution.latest_attempts()
        steps = {step.key: step for step in self._selected}
        for key, step in steps.items():
            run = latest.get(key)
            if run is None:
                progress.next_attempt[key] = 1
                continue
            # A retry queued by an operator is a PENDING attempt: run it under its number.
            pending = run.status is StepStatus.PENDING
            progress.next_attempt[key] = run.attempt if pending else run.attempt + 1
            if _lets_others_go_on(step, run.status):
                _record(progress, step, run.status, StepResult(run.output, None, run.exit_code))
        return progress


def _lets_others_go_on(step: StepSpec, status: StepStatus) -> bool:
    return status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED) or (
        status in _FAILED and step.continue_on_failure
    )


def _record(
    progress: _Progress, step: StepSpec, status: StepStatus, result: StepResult | None
) -> None:
    """Make a finished step's output visible to templates; mark it done if others may go on."""
    progress.scope[step.key] = {
        "output": None if result is None else result.output,
        "exit_code": None if result is None else result.exit_code,
        "status": status.value,
    }
    if _lets_others_go_on(step, status):
        progress.done.add(step.key)


class _Cancelled(Exception):
    """The step's kind was cancelled by a stop or by another step's failure."""


def _step_end_data(
    step: StepSpec,
    status: StepStatus,
    result: StepResult,
    assertions: list[dict[str, Any]],
    retry_in: float | None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": status,
        "kind": step.kind,
        "position": step.position,
        "output": result.output,
    }
    if result.exit_code is not None:
        data["exit_code"] = result.exit_code
    if result.error is not None:
        data["error"] = result.error
    if result.attributes:
        data["attributes"] = dict(result.attributes)
    if assertions:
        data["assertions"] = assertions
    if retry_in is not None:
        data["retry_in"] = retry_in
    return data


_ENTRY_TEXT_CHARS = 64_000  # of one entry's text; an agent's whole transcript is output-sized


def bounded_entry(data: dict[str, Any]) -> dict[str, Any]:
    """An entry's data with its text and details cut to a size one event can carry."""
    text = data.get("text")
    if isinstance(text, str) and len(text) > _ENTRY_TEXT_CHARS:
        dropped = len(text) - _ENTRY_TEXT_CHARS
        data = {**data, "text": f"{text[:_ENTRY_TEXT_CHARS]}… [{dropped} characters dropped]"}
    details = data.get("data")
    if details is not None:
        size = len(json.dumps(details, default=str))
        if size > _ENTRY_TEXT_CHARS:
            data = {**data, "data": {"dropped": f"{size} characters of details, over the limit"}}
    return data


def _retry_wait(policy_delay: float, retry_after: float | None, max_delay: float) -> float:
    """The wait before a retry: the policy's, or longer when the far end asked (Retry-After),
    never past max_delay (a provider asking for an hour does not hold the step for one)."""
    if retry_after is None or retry_after <= policy_delay:
        return policy_delay
    return min(retry_after, max_delay)


def _with_usage(result: StepResult, context: _StepContext) -> StepResult:
    """The result with the attempt's tokens and cost, for cost_usd_below and tokens_below."""
    totals = context.usage_so_far
    if result.observed is None or not totals.calls:
        return result
    unpriced = None
    if totals.unpriced:
        unpriced = f"{totals.unpriced} of {totals.calls} usage report(s) could not be priced"
    observed = dataclasses.replace(
        result.observed, tokens=totals.tokens, cost_usd=totals.cost_known, unpriced=unpriced
    )
    return dataclasses.replace(result, observed=observed)
