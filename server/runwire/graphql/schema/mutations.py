"""Write side: start and steer executions, create and update scenarios."""

from __future__ import annotations

from typing import Annotated

import strawberry

from runwire.domain.access import Permission
from runwire.domain.executions import StartRequest
from runwire.errors import RunwireError
from runwire.graphql.schema.access import AccessMutations
from runwire.graphql.schema.auth import audit_every_field, audit_with_write, authorized
from runwire.graphql.schema.batches import BatchMutations
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.deletion import DeletionMutations
from runwire.graphql.schema.errors import ErrorType, to_error
from runwire.graphql.schema.inputs import StartExecutionInput, json_object, trace_fields
from runwire.graphql.schema.reviews import ReviewMutations
from runwire.graphql.schema.schedules import ScheduleMutations
from runwire.graphql.schema.secrets import SecretMutations
from runwire.graphql.schema.storable import check_every_argument
from runwire.graphql.schema.suites import SuiteMutations
from runwire.graphql.schema.types import Execution, Scenario
from runwire.graphql.schema.webhooks import WebhookMutations


@strawberry.type
class StartExecutionSuccess:
    execution: Execution


@strawberry.type
class StopExecutionSuccess:
    execution: Execution


@strawberry.type
class PauseExecutionSuccess:
    execution: Execution


@strawberry.type
class ResumeExecutionSuccess:
    execution: Execution


@strawberry.type
class RetryStepSuccess:
    execution: Execution


@strawberry.type
class SkipStepSuccess:
    execution: Execution


@strawberry.type
class ScenarioSuccess:
    scenario: Scenario


# Every result union carries the whole error family, so clients handle errors one way.
StartExecutionResult = Annotated[
    StartExecutionSuccess | ErrorType,
    strawberry.union("StartExecutionResult"),
]
StopExecutionResult = Annotated[
    StopExecutionSuccess | ErrorType,
    strawberry.union("StopExecutionResult"),
]
PauseExecutionResult = Annotated[
    PauseExecutionSuccess | ErrorType,
    strawberry.union("PauseExecutionResult"),
]
ResumeExecutionResult = Annotated[
    ResumeExecutionSuccess | ErrorType,
    strawberry.union("ResumeExecutionResult"),
]
RetryStepResult = Annotated[
    RetryStepSuccess | ErrorType,
    strawberry.union("RetryStepResult"),
]
SkipStepResult = Annotated[
    SkipStepSuccess | ErrorType,
    strawberry.union("SkipStepResult"),
]
ScenarioResult = Annotated[
    ScenarioSuccess | ErrorType,
    strawberry.union("ScenarioResult"),
]


@strawberry.type
class Mutation(
    BatchMutations,
    AccessMutations,
    SecretMutations,
    SuiteMutations,
    WebhookMutations,
    DeletionMutations,
    ScheduleMutations,
    ReviewMutations,
):
    @strawberry.mutation
    async def start_execution(self, info: Info, input: StartExecutionInput) -> StartExecutionResult:
        try:
            actor = authorized(info, Permission.EXECUTION_WRITE)
            request = StartRequest(
                scenario=input.scenario,
                definition=input.definition,
                inputs=json_object(input.inputs, "inputs"),
                labels=tuple(input.labels or ()),
                priority=input.priority,
                timeout_seconds=input.timeout_seconds,
                grace_seconds=input.grace_seconds,
                mode=input.mode,
                step_key=input.step_key,
                upstream=json_object(input.upstream, "upstream"),
                idempotency_key=input.idempotency_key,
                **trace_fields(info.context, input.trace_context),
            )
            execution = await core(info).executions.start(
                request, actor, audit_with_write(info, StartExecutionSuccess)
            )
        except RunwireError as error:
            return to_error(error)
        return StartExecutionSuccess(execution=Execution.of(execution))

    @strawberry.mutation
    async def stop_execution(
        self, info: Info, id: strawberry.ID, reason: str | None = None
    ) -> StopExecutionResult:
        try:
            execution = await core(info).control.stop(
                str(id), reason, authorized(info, Permission.EXECUTION_WRITE)
            )
        except RunwireError as error:
            return to_error(error)
        return StopExecutionSuccess(execution=Execution.of(execution))

    @strawberry.mutation(
        description=(
            "A queued execution is held in the queue (PAUSED); a running one is PAUSING until its"
            " running steps end, then PAUSED."
        )
    )
    async def pause_execution(
        self, info: Info, id: strawberry.ID, reason: str | None = None
    ) -> PauseExecutionResult:
        try:
            execution = await core(info).control.pause(
                str(id), reason, authorized(info, Permission.EXECUTION_WRITE)
            )
        except RunwireError as error:
            return to_error(error)
        return PauseExecutionSuccess(execution=Execution.of(execution))

    @strawberry.mutation(
        description=(
            "A PAUSED execution goes back to the queue (with its original place) and continues"
            " where it stopped; a PAUSING one simply keeps running."
        )
    )
    async def resume_execution(self, info: Info, id: strawberry.ID) -> ResumeExecutionResult:
        try:
            execution = await core(info).control.resume(
                str(id), authorized(info, Permission.EXECUTION_WRITE)
            )
        except RunwireError as error:
            return to_error(error)
        return ResumeExecutionSuccess(execution=Execution.of(execution))

    @strawberry.mutation(
        description=(
            "On a FAILED, CANCELLED, TIMED_OUT or PAUSED execution: run the step again as a new"
            " attempt, then every step after it that has not succeeded. Same execution id;"
            " earlier attempts, their output and events are kept."
        )
    )
    async def retry_step(
        self, info: Info, execution_id: strawberry.ID, step_key: str
    ) -> RetryStepResult:
        try:
            execution = await core(info).control.retry_step(
                str(execution_id), step_key, authorized(info, Permission.EXECUTION_WRITE)
            )
        except RunwireError as error:
            return to_error(error)
        return RetryStepSuccess(execution=Execution.of(execution))

    @strawberry.mutation(
        description=(
            "Mark a failed or not yet started step SKIPPED; an ended or paused execution then"
            " continues with the steps after it."
        )
    )
    async def skip_step(
        self, info: Info, execution_id: strawberry.ID, step_key: str
    ) -> SkipStepResult:
        try:
            execution = await core(info).control.skip_step(
                str(execution_id), step_key, authorized(info, Permission.EXECUTION_WRITE)
            )
        except RunwireError as error:
            return to_error(error)
        return SkipStepSuccess(execution=Execution.of(execution))

    @strawberry.mutation(description="Save a new scenario (YAML or JSON text) as version 1.")
    async def create_scenario(self, info: Info, definition: str) -> ScenarioResult:
        return await _save(info, definition, must_exist=False)

    @strawberry.mutation(description="Save a definition as the next version of its scenario.")
    async def update_scenario(self, info: Info, definition: str) -> ScenarioResult:
        return await _save(info, definition, must_exist=True)


async def _save(info: Info, definition: str, *, must_exist: bool) -> ScenarioResult:
    try:
        saved = await core(info).scenarios.save(
            definition, authorized(info, Permission.SCENARIO_WRITE), must_exist=must_exist
        )
    except RunwireError as error:
        return to_error(error)
    return ScenarioSuccess(scenario=Scenario.of(saved))


# Every mutation is audited, the ones Mutation inherits included; done once, at import. The
# audit comes first, so it wraps (and records) a refusal of unstorable arguments too.
audit_every_field(Mutation)
check_every_argument(Mutation, mutation=True)
