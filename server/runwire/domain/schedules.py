"""Schedules: a saved scenario or suite started with inputs on a cron expression in a zone, or
every N s.

Each fire starts its execution (or suite run) with the idempotency key
`schedule:<id>:<fire time>`, so however many processes see a slot due, the unique index of
executions (of suite runs) lets one start; the store then advances `next_fire_at` by
compare-and-set, so the others stop looking at that slot.
A slot found late (downtime) follows the schedule's `missed` policy; see `due_fire`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from runwire.domain.access import Actor, Permission, Role
from runwire.domain.clock import utc_now
from runwire.domain.executions import ExecutionService, StartRequest
from runwire.domain.models import Execution, SuiteRun, TriggerType
from runwire.domain.scenarios import ScenarioService
from runwire.domain.suites import SuiteRunRequest, SuiteService
from runwire.errors import FieldError, Invalid, InvalidInputs, NotFound
from runwire.scenarios.definition import bind_inputs

logger = logging.getLogger(__name__)

MIN_INTERVAL_SECONDS = 1.0
MAX_INTERVAL_SECONDS = 366 * 86400.0
MAX_NAME_CHARS = 200
MAX_NEXT_FIRE_TIMES = 100
MAX_LAST_RUNS = 100
# Each suite run listed is read whole (every execution of it), as suiteRuns lists them.
MAX_LAST_SUITE_RUNS = 20
# A due slot later than this is missed: SKIP does not run it, RUN_ONCE does (once for all).
MISSED_AFTER = timedelta(seconds=60)
# The label executions and suite runs started by a schedule carry as `triggeredBy`.
TRIGGER_PREFIX = "schedule:"


class MissedFirePolicy(StrEnum):
    """What a schedule does with slots that passed while no process was firing it."""

    SKIP = "SKIP"  # go on with the next future slot
    RUN_ONCE = "RUN_ONCE"  # one start for all the missed slots, then go on


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule fires: exactly one of `cron` (in `time_zone`) or `interval_seconds`."""

    cron: str | None
    interval_seconds: float | None
    time_zone: str
    # Interval slots are anchor + k * interval, so every process computes the same slots.
    anchor: datetime

    def next_after(self, after: datetime) -> datetime:
        """The first slot strictly after `after` (UTC)."""
        if self.interval_seconds is not None:
            step = timedelta(seconds=self.interval_seconds)
            if after < self.anchor:
                return self.anchor
            count = (after - self.anchor) // step + 1
            return self.anchor + count * step
        assert self.cron is not None
        local = after.astimezone(ZoneInfo(self.time_zone))
        found: datetime = croniter(self.cron, local).get_next(datetime)
        return found.astimezone(UTC)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last slot at or before `moment` (UTC)."""
        if self.interval_seconds is not None:
            step = timedelta(seconds=self.interval_seconds)
            return self.anchor + ((moment - self.anchor) // step) * step
        assert self.cron is not None
        following = self.next_after(moment)
        local = following.astimezone(ZoneInfo(self.time_zone))
        found: datetime = croniter(self.cron, local).get_prev(datetime)
        return found.astimezone(UTC)

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        times: list[datetime] = []
        moment = after
        for _ in range(count):
            moment = self.next_after(moment)
            times.append(moment)
        return times


@dataclass(frozen=True, slots=True)
class Fire:
    """What a scheduler does for a schedule at `now`: start `fire_at` (if any), then move on."""

    fire_at: datetime | None
    next_fire_at: datetime


def due_fire(
    timing: Timing, next_fire_at: datetime, missed: MissedFirePolicy, now: datetime
) -> Fire | None:
    """The fire due at `now` for a schedule whose next slot is `next_fire_at`; None if not due.

    All due slots are coalesced into the latest one. It runs if it is on time (within
    MISSED_AFTER), or under RUN_ONCE however late; SKIP drops it when late.
    """
    if next_fire_at > now:
        return None
    latest = max(next_fire_at, timing.latest_at_or_before(now))
    on_time = now - latest <= MISSED_AFTER
    fire_at = latest if on_time or missed is MissedFirePolicy.RUN_ONCE else None
    return Fire(fire_at, timing.next_after(now))


@dataclass(frozen=True, slots=True)
class Schedule:
    id: str
    workspace_id: str
    name: str
    # What each fire starts: exactly one of a scenario (an execution) or a suite (a suite run).
    scenario: str | None
    suite: str | None
    inputs: Mapping[str, Any]
    timing: Timing
    missed: MissedFirePolicy
    enabled: bool
    next_fire_at: datetime | None  # None while disabled
    revision: int  # bumped by every change to next_fire_at, for compare-and-set
    created_at: datetime
    created_by: str
    updated_at: datetime

    @property
    def trigger_label(self) -> str:
        return f"{TRIGGER_PREFIX}{self.id}"


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    """An execution a schedule started, with the slot it was for (None for runScheduleNow)."""

    execution: Execution
    fire_at: datetime | None


@dataclass(frozen=True, slots=True)
class ScheduleSuiteRun:
    """A suite run a schedule started, with the slot it was for (None for runScheduleNow)."""

    run: SuiteRun
    fire_at: datetime | None


@dataclass(frozen=True, slots=True)
class ScheduleInput:
    """What create and update ask for (update: None keeps the field; a scenario or a suite
    given replaces the schedule's target, whichever it was)."""

    name: str | None = None
    scenario: str | None = None
    suite: str | None = None
    inputs: Mapping[str, Any] | None = None
    cron: str | None = None
    interval_seconds: float | None = None
    time_zone: str | None = None
    missed: MissedFirePolicy | None = None
    enabled: bool | None = None


class ScheduleStore(Protocol):
    async def insert_schedule(self, schedule: Schedule) -> None: ...

    async def update_schedule(self, schedule: Schedule) -> None:
        """Store every field, bumping the revision (a concurrent fire's advance then loses)."""

    async def delete_schedule(self, workspace: str, schedule_id: str) -> bool: ...

    async def schedule(self, workspace: str, schedule_id: str) -> Schedule | None: ...

    async def schedules(self, workspace: str) -> list[Schedule]: ...

    async def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        """Enabled schedules (any workspace) whose next slot is at or before `now`."""

    async def advance(self, schedule: Schedule, next_fire_at: datetime) -> bool:
        """Set next_fire_at if the revision is still the schedule's; whether this call did."""

    async def next_due_at(self) -> datetime | None:
        """The earliest next_fire_at of any enabled schedule."""

    async def runs(self, workspace: str, trigger: str, first: int) -> list[Execution]:
        """The latest executions `trigger` started itself (trigger type SCHEDULE; not the
        executions of its suite runs), newest first."""

    async def suite_runs(self, workspace: str, trigger: str, first: int) -> list[SuiteRun]:
        """The latest suite runs started by `trigger`, newest first."""


def fire_key(schedule_id: str, fire_at: datetime) -> str:
    """The idempotency key of a fire: one execution per schedule and slot."""
    return f"{TRIGGER_PREFIX}{schedule_id}:{fire_at.astimezone(UTC).isoformat()}"


def fire_time_of(started: Execution | SuiteRun) -> datetime | None:
    """The slot a scheduled execution (or suite run) was started for, read back from its
    idempotency key."""
    key = started.idempotency_key
    if key is None or not key.startswith(TRIGGER_PREFIX):
        return None
    try:
        return datetime.fromisoformat(key.split(":", 2)[2])
    except (IndexError, ValueError):
        return None


def schedule_actor(schedule: Schedule) -> Actor:
    """Who a schedule's executions and suite runs are started by: an operator named after the
    schedule."""
    return Actor(
        workspace_id=schedule.workspace_id, label=schedule.trigger_label, role=Role.OPERATOR
    )


class ScheduleService:
    """Create, change and fire schedules; the rules, independent of any framework."""

    def __init__(
        self,
        store: ScheduleStore,
        scenarios: ScenarioService,
        executions: ExecutionService,
        suites: SuiteService,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._scenarios = scenarios
        self._executions = executions
        self._suites = suites
        self._clock = clock

    async def create(self, request: ScheduleInput, actor: Actor) -> Schedule:
        actor.require(Permission.EXECUTION_WRITE)
        now = self._clock()
        timing = await self._validate(request, actor, now)
        assert request.name is not None
        enabled = True if request.enabled is None else request.enabled
        schedule = Schedule(
            id=str(uuid.uuid4()),
            workspace_id=actor.workspace_id,
            name=request.name.strip(),
            scenario=request.scenario,
            suite=request.suite,
            inputs=dict(request.inputs or {}),
            timing=timing,
            missed=request.missed or MissedFirePolicy.SKIP,
            enabled=enabled,
            next_fire_at=timing.next_after(now) if enabled else None,
            revision=0,
            created_at=now,
            created_by=actor.label,
            updated_at=now,
        )
        await self._store.insert_schedule(schedule)
        return schedule

    async def update(self, schedule_id: str, request: ScheduleInput, actor: Actor) -> Schedule:
        actor.require(Permission.EXECUTION_WRITE)
        current = await self.get(schedule_id, actor)
        now = self._clock()
        changes_timing = request.cron is not None or request.interval_seconds is not None
        # A scenario or a suite given is the new target; the other one is dropped.
        changes_target = request.scenario is not None or request.suite is not None
        merged = ScheduleInput(
            name=request.name if request.name is not None else current.name,
            scenario=request.scenario if changes_target else current.scenario,
            suite=request.suite if changes_target else current.suite,
            inputs=request.inputs if request.inputs is not None else current.inputs,
            cron=request.cron if changes_timing else current.timing.cron,
            interval_seconds=request.interval_seconds
            if changes_timing
            else current.timing.interval_seconds,
            time_zone=request.time_zone or current.timing.time_zone,
        )
        # The target is checked again only when it or the inputs change: a schedule whose
        # scenario (a case of its suite) changed under it can still be paused or renamed; its
        # fires are refused, logged, until it is fixed.
        checks_target = changes_target or request.inputs is not None
        timing = await self._validate(merged, actor, now, check_target=checks_target)
        assert merged.name is not None
        if not changes_timing and request.time_zone is None:
            timing = current.timing
        enabled = current.enabled if request.enabled is None else request.enabled
        next_fire_at = current.next_fire_at
        if not enabled:
            next_fire_at = None
        elif timing != current.timing or next_fire_at is None:
            next_fire_at = timing.next_after(now)
        updated = replace(
            current,
            name=merged.name.strip(),
            scenario=merged.scenario,
            suite=merged.suite,
            inputs=dict(merged.inputs or {}),
            timing=timing,
            missed=request.missed or current.missed,
            enabled=enabled,
            next_fire_at=next_fire_at,
            updated_at=now,
        )
        await self._store.update_schedule(updated)
        return updated

    async def set_enabled(self, schedule_id: str, enabled: bool, actor: Actor) -> Schedule:
        return await self.update(schedule_id, ScheduleInput(enabled=enabled), actor)

    async def delete(self, schedule_id: str, actor: Actor) -> None:
        actor.require(Permission.EXECUTION_WRITE)
        if not await self._store.delete_schedule(actor.workspace_id, schedule_id):
            raise NotFound(f"schedule {schedule_id} not found")

    async def get(self, schedule_id: str, actor: Actor) -> Schedule:
        actor.require(Permission.EXECUTION_READ)
        found = await self._store.schedule(actor.workspace_id, schedule_id)
        if found is None:
            raise NotFound(f"schedule {schedule_id} not found")
        return found

    async def in_workspace(self, actor: Actor) -> list[Schedule]:
        actor.require(Permission.EXECUTION_READ)
        return await self._store.schedules(actor.workspace_id)

    async def runs(self, schedule: Schedule, first: int) -> list[ScheduleRun]:
        """The executions the schedule started itself (a scenario schedule's), newest first."""
        found = await self._store.runs(
            schedule.workspace_id, schedule.trigger_label, max(0, min(first, MAX_LAST_RUNS))
        )
        return [ScheduleRun(execution, fire_time_of(execution)) for execution in found]

    async def suite_runs(self, schedule: Schedule, first: int) -> list[ScheduleSuiteRun]:
        """The suite runs the schedule started (a suite schedule's), newest first."""
        found = await self._store.suite_runs(
            schedule.workspace_id, schedule.trigger_label, max(0, min(first, MAX_LAST_SUITE_RUNS))
        )
        return [ScheduleSuiteRun(run, fire_time_of(run)) for run in found]

    def next_fire_times(self, schedule: Schedule, count: int) -> list[datetime]:
        if not schedule.enabled:
            return []
        count = max(0, min(count, MAX_NEXT_FIRE_TIMES))
        first = schedule.next_fire_at or schedule.timing.next_after(self._clock())
        return [first, *schedule.timing.upcoming(first, count - 1)] if count else []

    async def run_now(self, schedule_id: str, actor: Actor) -> Execution | SuiteRun:
        """Start the schedule's execution (suite run) now, outside its slots (enabled or not)."""
        actor.require(Permission.EXECUTION_WRITE)
        schedule = await self.get(schedule_id, actor)
        return await self._start(schedule, None)

    async def fire_due(self, limit: int = 100) -> int:
        """Fire every schedule due now, in any workspace; how many executions and suite runs
        this call asked to start (a fire another process started first counts too)."""
        now = self._clock()
        started = 0
        for schedule in await self._store.due_schedules(now, limit):
            assert schedule.next_fire_at is not None
            fire = due_fire(schedule.timing, schedule.next_fire_at, schedule.missed, now)
            if fire is None:
                continue
            if fire.fire_at is not None:
                try:
                    await self._start(schedule, fire.fire_at)
                    started += 1
                except (Invalid, NotFound) as refused:
                    # The scenario's (suite's) new version refuses the inputs (or it is gone):
                    # the slot is spent, so one bad schedule does not retry every second.
                    logger.warning(
                        "schedule %s (%s): the start of its %s slot was refused: %s",
                        schedule.id,
                        schedule.name,
                        fire.fire_at.isoformat(),
                        refused,
                    )
            # Advanced after the start: a process dying in between leaves the slot due, and the
            # next start of it finds the first by its idempotency key.
            await self._store.advance(schedule, fire.next_fire_at)
        return started

    async def _start(self, schedule: Schedule, fire_at: datetime | None) -> Execution | SuiteRun:
        key = fire_key(schedule.id, fire_at) if fire_at is not None else None
        actor = schedule_actor(schedule)
        if schedule.suite is not None:
            run = SuiteRunRequest(
                suite=schedule.suite,
                inputs=schedule.inputs,
                idempotency_key=key,
                trigger=TriggerType.SCHEDULE,
            )
            return await self._suites.start_run(run, actor)
        request = StartRequest(
            scenario=schedule.scenario,
            inputs=schedule.inputs,
            idempotency_key=key,
            trigger=TriggerType.SCHEDULE,
        )
        return await self._executions.start(request, actor)

    async def _validate(
        self, request: ScheduleInput, actor: Actor, now: datetime, *, check_target: bool = True
    ) -> Timing:
        errors: list[FieldError] = []
        name = request.name
        if name is None:
            errors.append(FieldError("name", "required"))
        elif not name.strip() or len(name) > MAX_NAME_CHARS:
            errors.append(FieldError("name", f"expected 1..{MAX_NAME_CHARS} characters"))
        time_zone = request.time_zone or "UTC"
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(FieldError("time_zone", f'unknown IANA time zone "{time_zone}"'))
            time_zone = "UTC"
        if (request.cron is None) == (request.interval_seconds is None):
            errors.append(FieldError("cron", "give exactly one of cron or interval_seconds"))
        elif request.cron is not None and not croniter.is_valid(request.cron):
            errors.append(FieldError("cron", f'not a valid cron expression: "{request.cron}"'))
        elif request.interval_seconds is not None and not (
            MIN_INTERVAL_SECONDS <= request.interval_seconds <= MAX_INTERVAL_SECONDS
        ):
            errors.append(
                FieldError(
                    "interval_seconds",
                    f"expected {MIN_INTERVAL_SECONDS:g}..{MAX_INTERVAL_SECONDS:g} seconds",
                )
            )
        if check_target:
            errors.extend(await self._target_errors(request, actor))
        if errors:
            raise Invalid(errors)
        return Timing(request.cron, request.interval_seconds, time_zone, anchor=now)

    async def _target_errors(self, request: ScheduleInput, actor: Actor) -> list[FieldError]:
        """Exactly one of scenario and suite, which exists and takes the inputs now."""
        if request.scenario is not None and request.suite is not None:
            return [FieldError("suite", "give exactly one of scenario or suite")]
        if request.suite is not None:
            try:
                await self._suites.check_run(
                    SuiteRunRequest(suite=request.suite, inputs=request.inputs), actor
                )
            except NotFound:
                return [FieldError("suite", f'no suite "{request.suite}" in this workspace')]
            except Invalid as refusal:
                # An override no case takes is the schedule's; a case that no longer fits its
                # scenario is the suite's, named under it.
                return [
                    error
                    if error.path.startswith("inputs")
                    else FieldError("suite", f"{error.path}: {error.message}")
                    for error in refusal.errors
                ]
            return []
        if request.scenario is None:
            return [FieldError("scenario", "required: give exactly one of scenario or suite")]
        try:
            definition, _ = await self._scenarios.resolve(
                actor.workspace_id, request.scenario, None
            )
        except NotFound:
            return [FieldError("scenario", f'no scenario "{request.scenario}" in this workspace')]
        try:
            bind_inputs(definition, request.inputs)
        except InvalidInputs as error:
            return _under_inputs(error.errors)
        return []


def _under_inputs(errors: Sequence[FieldError]) -> list[FieldError]:
    return [
        error
        if error.path.startswith("inputs")
        else FieldError(f"inputs.{error.path}", error.message)
        for error in errors
    ]
