"""Write side: start and stop executions, create and update scenarios."""

from __future__ import annotations

from typing import Annotated

import strawberry

from runwire.domain.errors import FieldError, InvalidInputs, RunwireError
from runwire.domain.services import StartRequest
from runwire.graphql.context import Info, actor, services
from runwire.graphql.errors import InvalidTransitionError, NotFoundError, ValidationError, to_error
from runwire.graphql.inputs import StartExecutionInput
from runwire.graphql.types import Execution, Scenario


@strawberry.type
class StartExecutionSuccess:
    execution: Execution


@strawberry.type
class StopExecutionSuccess:
    execution: Execution


@strawberry.type
class ScenarioSuccess:
    scenario: Scenario


# Every result union carries the whole error family, so clients handle errors one way.
StartExecutionResult = Annotated[
    StartExecutionSuccess | ValidationError | NotFoundError | InvalidTransitionError,
    strawberry.union("StartExecutionResult"),
]
StopExecutionResult = Annotated[
    StopExecutionSuccess | ValidationError | NotFoundError | InvalidTransitionError,
    strawberry.union("StopExecutionResult"),
]
ScenarioResult = Annotated[
    ScenarioSuccess | ValidationError | NotFoundError | InvalidTransitionError,
    strawberry.union("ScenarioResult"),
]


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def start_execution(self, info: Info, input: StartExecutionInput) -> StartExecutionResult:
        try:
            request = StartRequest(
                scenario=input.scenario,
                definition=input.definition,
                inputs=_inputs(input.inputs),
                labels=tuple(input.labels or ()),
                priority=input.priority,
                timeout_seconds=input.timeout_seconds,
                grace_seconds=input.grace_seconds,
            )
            execution = await services(info).executions.start(request, actor(info))
        except RunwireError as error:
            return to_error(error)
        return StartExecutionSuccess(execution=Execution.of(execution))

    @strawberry.mutation
    async def stop_execution(
        self, info: Info, id: strawberry.ID, reason: str | None = None
    ) -> StopExecutionResult:
        try:
            execution = await services(info).executions.stop(str(id), reason, actor(info))
        except RunwireError as error:
            return to_error(error)
        return StopExecutionSuccess(execution=Execution.of(execution))

    @strawberry.mutation(description="Save a new scenario (YAML or JSON text) as version 1.")
    async def create_scenario(self, info: Info, definition: str) -> ScenarioResult:
        return await _save(info, definition, must_exist=False)

    @strawberry.mutation(description="Save a definition as the next version of its scenario.")
    async def update_scenario(self, info: Info, definition: str) -> ScenarioResult:
        return await _save(info, definition, must_exist=True)


async def _save(info: Info, definition: str, *, must_exist: bool) -> ScenarioResult:
    try:
        saved = await services(info).executions.save_scenario(
            definition, actor(info), must_exist=must_exist
        )
    except RunwireError as error:
        return to_error(error)
    return ScenarioSuccess(scenario=Scenario.of(saved))


def _inputs(value: object) -> dict[str, object] | None:
    if value is None or isinstance(value, dict):
        return value
    raise InvalidInputs([FieldError("inputs", "expected a JSON object")])
