"""Schedules in the schema: start a saved scenario or suite on a cron expression or an interval.

Reading needs `execution:read`; creating, changing, deleting and running one needs
`execution:write` (what starting its executions needs), like startExecution.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from runwire.domain import models, schedules
from runwire.domain.access import Permission
from runwire.errors import RunwireError
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.errors import ErrorType, to_error
from runwire.graphql.schema.inputs import json_object
from runwire.graphql.schema.suites import SuiteRun, SuiteRunSuccess
from runwire.graphql.schema.types import Execution

MissedFirePolicy = strawberry.enum(
    schedules.MissedFirePolicy,
    description="Slots that passed while no process fired them (downtime): SKIP goes on with"
    " the next future slot; RUN_ONCE starts one execution (suite run) for all of them, then"
    " goes on.",
)


@strawberry.type(description="An execution a schedule started.")
class ScheduleRun:
    fire_time: datetime | None = strawberry.field(
        description="The slot it was started for; null when started by runScheduleNow."
    )
    execution: Execution


@strawberry.type(description="A suite run a schedule started.")
class ScheduleSuiteRun:
    fire_time: datetime | None = strawberry.field(
        description="The slot it was started for; null when started by runScheduleNow."
    )
    run: SuiteRun


@strawberry.type(
    description="A saved scenario or suite started with inputs on a cron or an interval."
)
class Schedule:
    id: strawberry.ID
    name: str
    scenario: str | None = strawberry.field(
        description="The scenario each fire starts an execution of; null for a suite schedule."
    )
    suite: str | None = strawberry.field(
        description="The suite each fire starts a run of; null for a scenario schedule."
    )
    inputs: JSON = strawberry.field(
        description="A scenario's inputs; for a suite, the overrides its run takes (`inputs` of"
        " startSuiteRun)."
    )
    cron: str | None = strawberry.field(description="Five fields (or six, with seconds).")
    interval_seconds: float | None
    time_zone: str = strawberry.field(description="The IANA zone the cron expression is read in.")
    missed: MissedFirePolicy  # type: ignore[valid-type]
    enabled: bool
    next_fire_at: datetime | None = strawberry.field(description="Null while disabled.")
    created_at: datetime
    created_by: str
    updated_at: datetime
    found: strawberry.Private[schedules.Schedule]

    @strawberry.field(description="The next slots, from nextFireAt on; none while disabled.")
    def next_fire_times(
        self,
        info: Info,
        count: Annotated[
            int, strawberry.argument(description=f"At most {schedules.MAX_NEXT_FIRE_TIMES}.")
        ] = 5,
    ) -> list[datetime]:
        return core(info).schedules.next_fire_times(self.found, count)

    @strawberry.field(
        description="The latest executions it started itself (triggeredBy schedule:<id>,"
        " triggerType SCHEDULE), newest first; a suite schedule's runs are lastSuiteRuns."
    )
    async def last_runs(
        self,
        info: Info,
        first: Annotated[
            int, strawberry.argument(description=f"At most {schedules.MAX_LAST_RUNS}.")
        ] = 10,
    ) -> list[ScheduleRun]:
        runs = await core(info).schedules.runs(self.found, first)
        return [
            ScheduleRun(fire_time=run.fire_at, execution=Execution.of(run.execution))
            for run in runs
        ]

    @strawberry.field(
        description="The latest suite runs it started (triggeredBy schedule:<id>), newest first,"
        " each read whole as suiteRun reads it."
    )
    async def last_suite_runs(
        self,
        info: Info,
        first: Annotated[
            int, strawberry.argument(description=f"At most {schedules.MAX_LAST_SUITE_RUNS}.")
        ] = 10,
    ) -> list[ScheduleSuiteRun]:
        actor = authorized(info, Permission.EXECUTION_READ)
        found = await core(info).schedules.suite_runs(self.found, first)
        suites = core(info).suites
        return [
            ScheduleSuiteRun(
                fire_time=started.fire_at,
                run=SuiteRun.of(await suites.run_result(started.run.id, actor)),
            )
            for started in found
        ]

    @classmethod
    def of(cls, found: schedules.Schedule) -> Schedule:
        return cls(
            id=strawberry.ID(found.id),
            name=found.name,
            scenario=found.scenario,
            suite=found.suite,
            inputs=JSON(dict(found.inputs)),
            cron=found.timing.cron,
            interval_seconds=found.timing.interval_seconds,
            time_zone=found.timing.time_zone,
            missed=found.missed,
            enabled=found.enabled,
            next_fire_at=found.next_fire_at,
            created_at=found.created_at,
            created_by=found.created_by,
            updated_at=found.updated_at,
            found=found,
        )


@strawberry.input(
    description="Give exactly one of scenario and suite, and exactly one of cron and"
    " intervalSeconds."
)
class CreateScheduleInput:
    name: str
    scenario: str | None = strawberry.field(
        default=None, description="A saved scenario; its latest version runs."
    )
    suite: str | None = strawberry.field(
        default=None,
        description="A saved suite; each fire runs its latest version once, as startSuiteRun"
        " with `inputs` (concurrency 10).",
    )
    inputs: JSON | None = None
    cron: str | None = None
    interval_seconds: float | None = strawberry.field(default=None, description="At least 1.")
    time_zone: str = "UTC"
    missed: MissedFirePolicy = schedules.MissedFirePolicy.SKIP  # type: ignore[valid-type]
    enabled: bool = True


@strawberry.input(
    description="Fields left out stay as they are; a new cron replaces an interval, a scenario"
    " replaces a suite and the reverse."
)
class UpdateScheduleInput:
    id: strawberry.ID
    name: str | None = None
    scenario: str | None = None
    suite: str | None = None
    inputs: JSON | None = None
    cron: str | None = None
    interval_seconds: float | None = None
    time_zone: str | None = None
    missed: MissedFirePolicy | None = None  # type: ignore[valid-type]
    enabled: bool | None = None


@strawberry.type
class ScheduleSuccess:
    schedule: Schedule


@strawberry.type
class DeleteScheduleSuccess:
    id: strawberry.ID


@strawberry.type
class RunScheduleNowSuccess:
    execution: Execution


ScheduleResult = Annotated[ScheduleSuccess | ErrorType, strawberry.union("ScheduleResult")]
DeleteScheduleResult = Annotated[
    DeleteScheduleSuccess | ErrorType, strawberry.union("DeleteScheduleResult")
]
# A scenario schedule starts an execution; a suite schedule a suite run, as startSuiteRun answers.
RunScheduleNowResult = Annotated[
    RunScheduleNowSuccess | SuiteRunSuccess | ErrorType, strawberry.union("RunScheduleNowResult")
]


@strawberry.type
class ScheduleQueries:
    @strawberry.field(description="The workspace's schedules, oldest first.")
    async def schedules(self, info: Info) -> list[Schedule]:
        actor = authorized(info, Permission.EXECUTION_READ)
        return [Schedule.of(found) for found in await core(info).schedules.in_workspace(actor)]


@strawberry.type
class ScheduleMutations:
    @strawberry.mutation(description="Schedule a saved scenario or suite (execution:write).")
    async def create_schedule(self, info: Info, input: CreateScheduleInput) -> ScheduleResult:
        try:
            actor = authorized(info, Permission.EXECUTION_WRITE)
            request = schedules.ScheduleInput(
                name=input.name,
                scenario=input.scenario,
                suite=input.suite,
                inputs=json_object(input.inputs, "inputs"),
                cron=input.cron,
                interval_seconds=input.interval_seconds,
                time_zone=input.time_zone,
                missed=schedules.MissedFirePolicy(input.missed),
                enabled=input.enabled,
            )
            found = await core(info).schedules.create(request, actor)
        except RunwireError as error:
            return to_error(error)
        return ScheduleSuccess(schedule=Schedule.of(found))

    @strawberry.mutation(description="Change a schedule (execution:write).")
    async def update_schedule(self, info: Info, input: UpdateScheduleInput) -> ScheduleResult:
        try:
            actor = authorized(info, Permission.EXECUTION_WRITE)
            request = schedules.ScheduleInput(
                name=input.name,
                scenario=input.scenario,
                suite=input.suite,
                inputs=json_object(input.inputs, "inputs"),
                cron=input.cron,
                interval_seconds=input.interval_seconds,
                time_zone=input.time_zone,
                missed=None if input.missed is None else schedules.MissedFirePolicy(input.missed),
                enabled=input.enabled,
            )
            found = await core(info).schedules.update(str(input.id), request, actor)
        except RunwireError as error:
            return to_error(error)
        return ScheduleSuccess(schedule=Schedule.of(found))

    @strawberry.mutation(
        description="Enable (from the next slot after now) or disable a schedule (execution:write)."
    )
    async def set_schedule_enabled(
        self, info: Info, id: strawberry.ID, enabled: bool
    ) -> ScheduleResult:
        try:
            actor = authorized(info, Permission.EXECUTION_WRITE)
            found = await core(info).schedules.set_enabled(str(id), enabled, actor)
        except RunwireError as error:
            return to_error(error)
        return ScheduleSuccess(schedule=Schedule.of(found))

    @strawberry.mutation(
        description="Delete a schedule (execution:write); its executions stay in history."
    )
    async def delete_schedule(self, info: Info, id: strawberry.ID) -> DeleteScheduleResult:
        try:
            actor = authorized(info, Permission.EXECUTION_WRITE)
            await core(info).schedules.delete(str(id), actor)
        except RunwireError as error:
            return to_error(error)
        return DeleteScheduleSuccess(id=id)

    @strawberry.mutation(
        description="Start the schedule's execution (a suite schedule: its suite run) now,"
        " enabled or not (execution:write)."
    )
    async def run_schedule_now(self, info: Info, id: strawberry.ID) -> RunScheduleNowResult:
        try:
            actor = authorized(info, Permission.EXECUTION_WRITE)
            started = await core(info).schedules.run_now(str(id), actor)
            if isinstance(started, models.SuiteRun):
                result = await core(info).suites.run_result(started.id, actor)
                return SuiteRunSuccess(run=SuiteRun.of(result))
        except RunwireError as error:
            return to_error(error)
        return RunScheduleNowSuccess(execution=Execution.of(started))
