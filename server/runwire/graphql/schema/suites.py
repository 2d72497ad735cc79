"""Suites in the schema: define them, read them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from runwire.domain.access import Permission
from runwire.domain.models import SuiteVersion
from runwire.errors import RunwireError
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.errors import ErrorType, to_error
from runwire.scenarios.suites import SuiteCase as ParsedCase


@strawberry.type(description="One case of a suite, after its matrix or rows were expanded.")
class SuiteCase:
    name: str
    scenario: str | None = strawberry.field(description="Null for an inline definition.")
    definition_name: str | None = strawberry.field(
        description="The inline definition's name; null for a scenario."
    )
    inputs: JSON
    labels: list[str]
    expected_status: str = strawberry.field(
        description="The status a repeat must end with to pass: SUCCEEDED, FAILED or TIMED_OUT."
    )

    @classmethod
    def of(cls, case: ParsedCase) -> SuiteCase:
        return cls(
            name=case.name,
            scenario=case.scenario,
            definition_name=case.definition.name if case.definition else None,
            inputs=JSON(dict(case.inputs)),
            labels=list(case.labels),
            expected_status=case.expected_status,
        )


@strawberry.type(description="One version of a named suite: cases run and compared together.")
class Suite:
    name: str
    version: int
    description: str
    tags: list[str]
    created_at: datetime
    created_by: str
    definition: JSON = strawberry.field(description="The suite document as saved.")
    _version: strawberry.Private[SuiteVersion]

    @strawberry.field(description="Every case, matrices and rows expanded, in document order.")
    def cases(self, info: Info) -> list[SuiteCase]:
        return [SuiteCase.of(case) for case in core(info).suites.parsed(self._version).cases]

    @classmethod
    def of(cls, suite: SuiteVersion) -> Suite:
        return cls(
            name=suite.name,
            version=suite.version,
            description=suite.description,
            tags=list(suite.tags),
            created_at=suite.created_at,
            created_by=suite.created_by,
            definition=JSON(dict(suite.definition)),
            _version=suite,
        )


@strawberry.type
class SuiteSuccess:
    suite: Suite


SuiteResult = Annotated[SuiteSuccess | ErrorType, strawberry.union("SuiteResult")]


@strawberry.type
class SuiteQueries:
    @strawberry.field(description="The latest version of the suite, or the given one.")
    async def suite(self, info: Info, name: str, version: int | None = None) -> Suite | None:
        workspace = authorized(info, Permission.EXECUTION_READ).workspace_id
        suites = core(info).store.suites
        found = (
            await suites.latest_suite(workspace, name)
            if version is None
            else await suites.suite_version(workspace, name, version)
        )
        return Suite.of(found) if found else None

    @strawberry.field(description="The latest version of every suite (with the tag, if given).")
    async def suites(self, info: Info, tag: str | None = None) -> list[Suite]:
        workspace = authorized(info, Permission.EXECUTION_READ).workspace_id
        return [Suite.of(found) for found in await core(info).store.suites.suites(workspace, tag)]


@strawberry.type
class SuiteMutations:
    @strawberry.mutation(
        description="Save a new suite (YAML or JSON text) as version 1; see docs/suites.md."
    )
    async def create_suite(self, info: Info, definition: str) -> SuiteResult:
        return await _save(info, definition, must_exist=False)

    @strawberry.mutation(description="Save a suite document as the next version of its suite.")
    async def update_suite(self, info: Info, definition: str) -> SuiteResult:
        return await _save(info, definition, must_exist=True)


async def _save(info: Info, definition: str, *, must_exist: bool) -> SuiteResult:
    try:
        saved = await core(info).suites.save(
            definition, authorized(info, Permission.SCENARIO_WRITE), must_exist=must_exist
        )
    except RunwireError as error:
        return to_error(error)
    return SuiteSuccess(suite=Suite.of(saved))
