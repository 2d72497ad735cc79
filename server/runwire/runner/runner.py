"""Claim queued executions up to a number of slots, run them under a lease, hand them on.

The runner looks for work when the queue signals it (queue/signals.py: something was queued, a
control request was stored, a slot of its own came free) and, as a safety net, every poll
interval.

Every execution it holds, it holds under a lease (an owner and a generation, see queue/store.py)
that a heartbeat renews every `heartbeat_seconds`; its events are written only while the
database says that lease still holds (events/log.py). The timing that keeps one execution from
running in two places, with the lease L and the heartbeat H:

- a runner that has not renewed for L - 2H gives up its running steps: it stops them at once
  and writes nothing more for them (they are abandoned, not ended); it keeps trying to renew;
- a lease is taken over only once it is expired by 2H, and only by a runner that has reached the
  database for L without a break: after an outage, whoever was cut off first renews what it
  still holds, writes what it had accepted, and resumes what it gave up itself;
- the runner that resumes an execution (its own, or one it took over) records the attempt left
  RUNNING as failed, "runner lost", and retries it or not by the step's `on_runner_lost`.

Leaving `Runner.running` drains: nothing new is claimed, running steps get `drain_seconds` to
finish, the ones still running then are interrupted, and every execution that has steps left is
queued again ("handed over") for a peer to continue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import Any

from runwire import logs
from runwire.db.executions import ExecutionRepository
from runwire.domain.artifacts import ArtifactStore
from runwire.domain.clock import utc_now
from runwire.domain.models import Event, EventType, Execution, ExecutionStatus, Lease
from runwire.errors import RunwireError
from runwire.events.log import EventLog, Ownership
from runwire.faults import is_outage
from runwire.metrics import Metrics
from runwire.queue.signals import QueueSignals
from runwire.queue.store import ExecutionQueue
from runwire.runner.execution import SHUTDOWN_REASON, ExecutionRun, LoadSecrets
from runwire.runner.output_budget import OutputLimits
from runwire.runner.pricing import PriceTable
from runwire.runner.steps.base import StepKind
from runwire.runner.steps.confinement import remove_directories_of_dead_servers
from runwire.runner.steps.containment import end_leftovers_of_dead_servers
from runwire.runner.steps.step_uids import remove_stale_locks
from runwire.scenarios.definition import parse_definition
from runwire.settings import Settings

logger = logging.getLogger(__name__)

_NOT_RUNNING = (ExecutionStatus.QUEUED, ExecutionStatus.PAUSED, ExecutionStatus.WAITING)

# Definitions with at least this many steps are parsed off the event loop when claimed.
_ON_LOOP_STEPS = 50

_RELEASE_RETRY_SECONDS = 0.5


class Runner:
    """One per process; owns the executions it claimed through a renewed lease."""

    def __init__(
        self,
        queue: ExecutionQueue,
        executions: ExecutionRepository,
        log: EventLog,
        kinds: Mapping[str, StepKind[Any]],
        settings: Settings,
        load_secrets: LoadSecrets | None = None,
        artifacts: ArtifactStore | None = None,
        metrics: Metrics | None = None,
        settled: Callable[[str], None] | None = None,
    ) -> None:
        self._queue = queue
        self._metrics = metrics or Metrics()
        self._settled = settled
        self._load_secrets = load_secrets
        self._artifacts = artifacts
        self._executions = executions
        self._log = log
        self._kinds = kinds
        self._settings = settings
        self._prices = PriceTable.load(settings.prices_file)
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._runs: dict[str, ExecutionRun] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Every execution held under a lease: running, ended and not yet released, or given up
        # while the database was out of reach (abandoned) and to be resumed once it answers.
        self._held: dict[str, Lease] = {}
        self._abandoned: set[str] = set()
        # Abandoned ones whose run is being made again (see _readopt).
        self._resuming: set[str] = set()
        # The reason of each stop applied to a held execution's run: a run given up before its
        # stop ended it is made again stopped (its request was handled with the first run).
        self._stops: dict[str, str] = {}
        # Executions whose lease is being released: a renewal that read them as held before the
        # release finds them unowned afterwards, which is no takeover.
        self._releasing: set[str] = set()
        self._wakeup = asyncio.Event()
        self._control_lock = asyncio.Lock()
        self._draining = False
        self._renewed_at = time.monotonic()
        # Since when the database has answered this runner without a break (None: it does not).
        self._reachable_since: float | None = time.monotonic()

    @property
    def slots(self) -> int:
        return self._settings.runner_slots

    @property
    def busy(self) -> int:
        """Slots taken now: executions this runner is running."""
        return len(self._runs)

    @property
    def _give_up_after(self) -> float:
        return self._settings.lease_seconds - 2 * self._settings.heartbeat_seconds

    @property
    def _takeover_margin(self) -> float:
        return 2 * self._settings.heartbeat_seconds

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
        load_secrets: LoadSecrets | None = None,
        artifacts: ArtifactStore | None = None,
        metrics: Metrics | None = None,
        settled: Callable[[str], None] | None = None,
    ) -> AsyncIterator[Runner]:
        """Claim and run, woken by queue signals, for the block; leaving it drains.

        `settled` is told each execution id this runner let go of once all its events are stored
        (it ended, paused or was handed over), e.g. to export its trace.
        """
        # Before running anything: processes of steps whose server died with their reapers
        # (both SIGKILLed) still run on this host; only a new runner can end them.
        if killed := await asyncio.to_thread(end_leftovers_of_dead_servers):
            logger.warning("killed %d processes left by steps of servers that died", killed)
        # Then their steps' directories (removed by the step's end, which never came), and the
        # locks on their steps' uids, now that no process runs as those.
        await asyncio.to_thread(remove_directories_of_dead_servers, settings.step_dir)
        await asyncio.to_thread(remove_stale_locks)
        runner = cls(
            queue, executions, log, kinds, settings, load_secrets, artifacts, metrics, settled
        )
        loop_task = asyncio.create_task(runner._loop(), name="runwire-runner")
        listening = asyncio.create_task(runner._listen(signals), name="runwire-runner-signals")
        heartbeat = asyncio.create_task(runner._heartbeat(), name="runwire-runner-heartbeat")
        try:
            yield runner
        finally:
            runner._draining = True
            for task in (listening, loop_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            try:
                await runner._drain()
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat

    def wake(self) -> None:
        """Look for queued executions and control requests now rather than at the next poll."""
        self._wakeup.set()

    async def _listen(self, signals: QueueSignals) -> None:
        async for _ in signals.listen():
            self.wake()

    # ---- the claim loop -------------------------------------------------------------------

    async def _loop(self) -> None:
        last_takeover = 0.0
        while True:
            try:
                await self._apply_controls()
                now = time.monotonic()
                if self._may_take_over(now) and now - last_takeover >= (
                    self._settings.heartbeat_seconds
                ):
                    await self._take_over_expired()
                    last_takeover = now
                free = self.slots - len(self._runs)
                if free > 0:
                    claimed = await self._queue.claim(
                        self.owner, free, self._settings.lease_seconds
                    )
                    for execution in claimed:
                        if execution.started_at is None:
                            # A retried or handed-over execution keeps its first queued_at.
                            self._metrics.claimed((utc_now() - execution.queued_at).total_seconds())
                    await self._start_all([(execution, None) for execution in claimed])
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._reached(False, error, "the claim loop")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.poll_seconds):
                    await self._wakeup.wait()
            self._wakeup.clear()

    def _may_take_over(self, now: float) -> bool:
        """Only after reaching the database for a whole lease: peers cut off with this runner
        first renew what they still hold."""
        since = self._reachable_since
        return since is not None and now - since >= self._settings.lease_seconds

    def _reached(self, ok: bool, error: Exception | None = None, where: str = "") -> None:
        """Note whether the database answered; say so once per change, not once per attempt."""
        if ok:
            if self._reachable_since is None:
                logger.info("runner: the database answers again")
                self._reachable_since = time.monotonic()
            return
        if self._reachable_since is not None:
            self._reachable_since = None
            if error is not None and is_outage(error):
                logger.error("runner: the database is unreachable (%s)", type(error).__name__)
            else:
                logger.exception("runner: %s failed", where, exc_info=error)

    async def _apply_controls(self) -> None:
        """Apply pending control requests for executions this runner owns."""
        async with self._control_lock:
            requests = await self._queue.pending_controls(self.owner)
            # Given up while the database was out of reach and to be resumed: their requests
            # wait for the run made again (a stop marked handled here was lost, and the
            # resumed execution ran on; found by P7).
            waiting = self._abandoned | self._resuming
            for request in requests:
                run = self._runs.get(request.execution_id)
                if run is None:
                    continue  # it ended meanwhile (the caller sees the end state), or waits
                if request.action == "stop":
                    reason = self._stops[request.execution_id] = request.reason or "stopped"
                    run.stop(reason)
                elif request.action == "pause":
                    run.pause(request.reason or "paused")
                elif request.action == "resume":
                    run.resume()
                elif request.action == "skip_step" and request.step_key is not None:
                    run.skip(request.step_key)
                elif request.action == "decide_review" and request.step_key is not None:
                    run.decide_review(request.step_key, request.reason or "")
            for execution_id in {request.execution_id for request in requests}:
                if execution_id in waiting and execution_id not in self._runs:
                    continue
                await self._queue.mark_controls_handled(execution_id)

    async def _take_over_expired(self) -> None:
        """Executions whose runner was lost: resume the running ones, release the rest."""
        taken = await self._queue.take_over_expired(
            self.owner,
            self._settings.lease_seconds,
            self._takeover_margin,
            # Its own leases that this runner still holds are not lost, only late: taken over,
            # a running one would run twice.
            keep=self._held.keys(),
        )
        starting: list[tuple[Execution, str | None]] = []
        for execution, previous in taken:
            lease = execution.lease
            assert lease is not None
            self._held[execution.id] = lease
            logger.warning(
                "runner: took over execution %s (%s) from lost runner %s",
                execution.id,
                execution.status,
                previous,
            )
            # Not running: queued, paused, waiting for a review, or ended.
            if execution.status in _NOT_RUNNING or (execution.status.is_terminal):
                self._track(execution.id, self._settle(execution.id, lease))  # nothing ran
            else:
                starting.append((execution, previous))
        await self._start_all(starting)

    async def _start_all(self, executions: Sequence[tuple[Execution, str | None]]) -> None:
        """Start claimed or taken-over executions (each with the runner it was taken from).

        All are held, so renewed, before the first starts: starting a thousand one by one takes
        longer than a lease, and one waiting its turn unrenewed was taken over as lost (P7).
        """
        for execution, _ in executions:
            assert execution.lease is not None, "claimed and taken over executions carry a lease"
            self._held[execution.id] = execution.lease
        for index, (execution, lost_runner) in enumerate(executions):
            try:
                await self._start(execution, lost_runner=lost_runner)
            except BaseException:
                # Not started: let their leases lapse, so that they are taken over and run.
                for waiting, _ in executions[index:]:
                    if waiting.id not in self._runs and waiting.id not in self._tasks:
                        self._held.pop(waiting.id, None)
                raise

    # ---- one execution --------------------------------------------------------------------

    async def _start(self, execution: Execution, lost_runner: str | None = None) -> None:
        lease = execution.lease
        assert lease is not None, "claimed and taken over executions carry their lease"
        self._held[execution.id] = lease
        ownership = self._log.own(execution.id, lease)
        # A resumed or retried execution continues from its stored step attempts.
        execution = replace(execution, steps=await self._executions.steps(execution.id))
        try:
            parse = functools.partial(parse_definition, execution.definition, self._kinds)
            # A large definition parses in a thread, not on the loop every other execution's
            # events and requests share.
            large = len(execution.definition.get("steps") or ()) >= _ON_LOOP_STEPS
            definition = await asyncio.to_thread(parse) if large else parse()
        except RunwireError as error:
            # Stored definitions were valid when started; a kind removed since is the
            # likely cause. The execution fails with the reason instead of blocking a slot.
            self._fail_unstartable(execution, lease, error.message)
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
            output_limits=OutputLimits.of(self._settings),
            ownership=ownership,
            lost_runner=lost_runner,
            load_secrets=self._load_secrets,
            prices=self._prices,
            server_secrets=self._settings.llm_keys.values(),
            artifacts=self._artifacts,
            artifact_max_bytes=self._settings.artifact_max_bytes,
            metrics=self._metrics,
        )
        self._runs[execution.id] = run
        if lost_runner == self.owner and (reason := self._stops.get(execution.id)) is not None:
            run.stop(reason)  # resumed after a give-up that cut its stop short
        self._track(execution.id, self._run(run, lease, ownership))

    def _track(self, execution_id: str, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` for the execution as a task the drain waits for."""

        async def tracked() -> None:
            # This task's context (and its steps' tasks, which copy it) only: see logs.py.
            logs.execution_id.set(execution_id)
            try:
                await work
            finally:
                if self._tasks.get(execution_id) is asyncio.current_task():
                    del self._tasks[execution_id]

        self._tasks[execution_id] = asyncio.create_task(tracked(), name=f"run-{execution_id}")

    async def _run(self, run: ExecutionRun, lease: Lease, ownership: Ownership) -> None:
        logger.info("execution claimed by runner %s", self.owner)
        try:
            watch = asyncio.create_task(self._watch(run, ownership))
            try:
                await run.run()
            finally:
                watch.cancel()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("runner: execution %s crashed", run.id)
        finally:
            self._runs.pop(run.id, None)
            self.wake()  # a slot came free
        await asyncio.shield(self._after(run, lease, ownership))

    async def _watch(self, run: ExecutionRun, ownership: Ownership) -> None:
        """Abandon the run once the database refuses its events for good."""
        await ownership.lost.wait()
        run.abandon(ownership.reason)

    async def _after(self, run: ExecutionRun, lease: Lease, ownership: Ownership) -> None:
        """Settle an ended run: release it, replace refused events, or let its lease go."""
        if ownership.lost.is_set() and not ownership.lease_lost:
            # The database refused an event's data: end the execution in its place, with an
            # event that says so (its seq is the refused one's, so seqs stay gapless).
            assert ownership.first_refused is not None
            self._log.append(
                Event(
                    execution_id=run.id,
                    seq=ownership.first_refused,
                    at=utc_now(),
                    type=EventType.EXECUTION_STATUS,
                    data={
                        "status": ExecutionStatus.FAILED,
                        "error": f"event seq {ownership.first_refused} could not be stored:"
                        f" {ownership.reason}",
                    },
                )
            )
        elif run.abandoned is not None:
            if self._held.get(run.id) == lease and not ownership.lease_lost:
                # Given up while the database was out of reach: still held, so once renewing
                # works again this runner resumes it itself (see _heartbeat).
                self._abandoned.add(run.id)
            else:
                self._held.pop(run.id, None)  # another runner holds it now
                self._stops.pop(run.id, None)
                # Still fenced until the last of its events is refused (or stored, if they were
                # written before the lease changed hands): then forget the lease.
                await self._log.persisted(run.id)
                self._log.disown(run.id)
            return
        await self._settle(run.id, lease)

    async def _readopt(self, execution_id: str, lease: Lease) -> None:
        """Resume an execution this runner gave up while the database was out of reach."""
        try:
            await self._log.persisted(execution_id)  # what it wrote before it gave up, first
            execution = await self._executions.execution(
                execution_id, workspace=None, with_steps=False
            )
            if execution is None or execution.lease != lease:
                self._held.pop(execution_id, None)
                self._stops.pop(execution_id, None)
                self._log.disown(execution_id)
                return
            logger.warning(
                "runner: resuming execution %s, given up while unreachable", execution_id
            )
            await self._start(execution, lost_runner=self.owner)
        finally:
            self._resuming.discard(execution_id)
        self.wake()  # a request that waited for the run (see _apply_controls)

    async def _settle(self, execution_id: str, lease: Lease) -> None:
        """Release the lease once every event written for it is stored (the heartbeat keeps it
        meanwhile, through an outage too)."""
        try:
            await self._log.persisted(execution_id)
            self._releasing.add(execution_id)
            while self._held.get(execution_id) == lease:
                try:
                    if not await self._queue.release(execution_id, lease):
                        logger.warning("runner: execution %s was taken over", execution_id)
                    break
                except Exception as error:
                    self._reached(False, error, "releasing an execution")
                    await asyncio.sleep(_RELEASE_RETRY_SECONDS)
            else:
                return
            self._reached(True)
            if self._settled is not None:
                self._settled(execution_id)
        finally:
            if self._held.get(execution_id) == lease:
                del self._held[execution_id]
                self._stops.pop(execution_id, None)
            self._releasing.discard(execution_id)
            self._log.disown(execution_id)
            self.wake()

    def _fail_unstartable(self, execution: Execution, lease: Lease, reason: str) -> None:
        self._metrics.execution_ended(execution.scenario_name, ExecutionStatus.FAILED)
        self._log.append(
            Event(
                execution_id=execution.id,
                seq=execution.last_seq + 1,
                at=utc_now(),
                type=EventType.EXECUTION_STATUS,
                data={"status": ExecutionStatus.FAILED, "error": reason},
            )
        )
        self._track(execution.id, self._settle(execution.id, lease))

    # ---- the lease ------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Renew every held lease each heartbeat; give up running steps before they can be
        taken over when renewing keeps failing."""
        interval = self._settings.heartbeat_seconds
        renewing: asyncio.Task[None] | None = None
        try:
            while True:
                await asyncio.sleep(interval)
                # Kept apart from the renewal itself: a call that hangs (a cut connection that
                # has not failed yet) must not keep this runner from giving up in time.
                if time.monotonic() - self._renewed_at > self._give_up_after:
                    self._give_up(f"could not renew its lease for {self._give_up_after:g}s")
                if renewing is None or renewing.done():
                    renewing = asyncio.create_task(self._renew(), name="runwire-runner-renew")
        finally:
            if renewing is not None:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing

    async def _renew(self) -> None:
        # Whether the database takes this runner's writes is decided here, each heartbeat: a
        # read-only database still answers the claim loop's reads.
        held = dict(self._held)
        if not held:
            try:
                await self._queue.check_writable(statement_timeout=self._give_up_after)
            except Exception as error:
                self._reached(False, error, "writing to the database")
                return
            self._renewed_at = time.monotonic()
            self._reached(True)
            return
        try:
            renewed = await self._queue.renew_leases(
                self.owner,
                held,
                self._settings.lease_seconds,
                statement_timeout=self._give_up_after,
            )
        except Exception as error:
            self._reached(False, error, "renewing leases")
            return
        self._renewed_at = time.monotonic()
        self._reached(True)
        for execution_id in set(held) - renewed:
            if (
                execution_id in self._releasing
                or self._held.get(execution_id) != held[execution_id]
            ):
                continue  # released meanwhile, not taken
            logger.error("runner: execution %s was taken over by another runner", execution_id)
            self._held.pop(execution_id, None)
            self._stops.pop(execution_id, None)
            self._abandoned.discard(execution_id)
            run = self._runs.get(execution_id)
            if run is not None:
                run.abandon("its lease was taken over")
        for execution_id in self._abandoned & renewed:
            self._abandoned.discard(execution_id)
            self._resuming.add(execution_id)
            self._track(execution_id, self._readopt(execution_id, held[execution_id]))

    def _give_up(self, reason: str) -> None:
        for run in list(self._runs.values()):
            run.abandon(reason)

    # ---- draining -------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Hand running executions over: let steps finish, interrupt the rest, queue them."""
        for run in self._runs.values():
            run.hand_over(SHUTDOWN_REASON)
        settings = self._settings
        if await self._wait_for_runs(settings.drain_seconds):
            return
        for run in self._runs.values():
            run.interrupt()
        if await self._wait_for_runs(settings.grace_seconds + settings.heartbeat_seconds):
            return
        left = list(self._tasks.values())
        logger.error("runner: %d executions did not hand over in time; cancelling", len(left))
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    async def _wait_for_runs(self, seconds: float) -> bool:
        """Wait up to `seconds` for every run and its release; True if none is left."""
        deadline = time.monotonic() + seconds
        while self._tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.wait(list(self._tasks.values()), timeout=remaining)
        return True
