"""Which runners are alive, and whether queued work is waiting for a runner that is not there.

Runners serve every workspace's queue (a claim takes the oldest queued execution of any
workspace), so "a runner for this workspace" is any alive runner. A runner records itself in
the database when it starts, refreshes the record every heartbeat and removes it when it stops
claiming; one that died without removing it stops counting once its `alive_until` passes (its
heartbeat time plus its lease), the same time after which its executions may be taken over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from runwire.domain.clock import utc_now


@dataclass(frozen=True, slots=True)
class RunnerPresence:
    """A runner as it last recorded itself: where it runs, since when, and how full it is."""

    id: str
    host: str
    pid: int
    started_at: datetime
    last_seen_at: datetime
    alive_until: datetime
    slots: int
    busy: int

    def alive(self, now: datetime) -> bool:
        return now < self.alive_until


@dataclass(frozen=True, slots=True)
class Waiting:
    """Queued executions no runner has claimed yet, and when the oldest of them was queued."""

    count: int
    oldest_queued_at: datetime | None

    def oldest_age_seconds(self, now: datetime) -> float | None:
        if self.oldest_queued_at is None:
            return None
        return max(0.0, (now - self.oldest_queued_at).total_seconds())


@dataclass(frozen=True, slots=True)
class QueueHealth:
    """Whether queued work can run: alive runners, what waits, and a warning when it cannot."""

    runners_alive: int
    runner_slots: int
    waiting: Waiting
    oldest_queued_age_seconds: float | None
    warning: str | None

    @classmethod
    def of(
        cls,
        runners: Sequence[RunnerPresence],
        waiting: Waiting,
        now: datetime,
        grace_seconds: float,
        runs_here: bool = False,
    ) -> QueueHealth:
        """Judge the queue at `now`: warn once work has waited `grace_seconds` with no runner.

        The grace keeps a deployment whose workers start a little after its API replicas from
        warning at every start. A process that runs a runner itself never warns: its runner is
        alive by definition (its record may lag while the database is out of reach).
        """
        alive = [runner for runner in runners if runner.alive(now)]
        age = waiting.oldest_age_seconds(now)
        warning = None
        if not alive and not runs_here and age is not None and age > grace_seconds:
            warning = no_runner_warning(waiting.count, age)
        return cls(
            runners_alive=len(alive),
            runner_slots=sum(runner.slots for runner in alive),
            waiting=waiting,
            oldest_queued_age_seconds=age,
            warning=warning,
        )


def no_runner_warning(queued: int, oldest_age_seconds: float) -> str:
    """The one sentence every surface (log, /ready, GraphQL, rw) uses for a runnerless queue."""
    executions = "execution is" if queued == 1 else "executions are"
    return (
        f"{queued} {executions} queued (the oldest for {oldest_age_seconds:.0f}s) and no runner"
        " is alive: start `runwire worker`, or a server with RUNWIRE_RUNNER=true"
    )


class RunnerStore(Protocol):
    """Where runners record themselves, and where the queue's waiting work is counted."""

    async def record_runner(self, presence: RunnerPresence) -> None:
        """Insert or refresh the runner's record."""
        ...

    async def remove_runner(self, runner_id: str) -> None: ...

    async def forget_dead_runners(self, now: datetime) -> None:
        """Delete the records of runners long dead (killed, so never removed)."""
        ...

    async def runners(self, now: datetime) -> list[RunnerPresence]:
        """The runners alive at `now`, oldest first."""
        ...


class WaitingCounts(Protocol):
    """Where the queued executions no runner holds are counted."""

    async def waiting(self, workspace: str | None) -> Waiting:
        """Of one workspace, or of all (None)."""
        ...


class QueueHealthService:
    """Judges the queue for /ready, the log and the API: the same rule, the same sentence."""

    def __init__(
        self,
        runners: RunnerStore,
        counts: WaitingCounts,
        grace_seconds: float,
        runs_here: bool,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._runners = runners
        self._counts = counts
        self._grace = grace_seconds
        self.runs_here = runs_here
        self._now = now

    async def alive_runners(self) -> list[RunnerPresence]:
        return await self._runners.runners(self._now())

    async def judge(self, workspace: str | None) -> QueueHealth:
        """The queue of one workspace (None: of all) against every alive runner."""
        now = self._now()
        runners = await self._runners.runners(now)
        waiting = await self._counts.waiting(workspace)
        return QueueHealth.of(runners, waiting, now, self._grace, self.runs_here)
