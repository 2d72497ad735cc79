"""Suites: save them as versions, each case checked against the scenario it runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runwire.domain.access import Actor
from runwire.domain.executions import label_errors
from runwire.domain.models import SuiteVersion
from runwire.domain.ports import SuiteStore
from runwire.domain.scenarios import ScenarioService
from runwire.errors import FieldError, Invalid, InvalidInputs, NotFound
from runwire.scenarios.definition import Definition, bind_inputs
from runwire.scenarios.limits import DEFAULT_LIMITS, InputLimits, text_bytes, too_big
from runwire.scenarios.suites import SuiteCase, SuiteDefinition, parse_suite


class SuiteService:
    """The only way suites are saved, and a saved suite's cases are read."""

    def __init__(
        self,
        store: SuiteStore,
        scenarios: ScenarioService,
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> None:
        self._store = store
        self._scenarios = scenarios
        self._limits = limits
        # A stored version never changes, so its parse is kept under its identity.
        self._parsed: dict[tuple[str, str, int], SuiteDefinition] = {}

    async def save(
        self, source: str | Mapping[str, Any], actor: Actor, *, must_exist: bool | None = None
    ) -> SuiteVersion:
        """Check a suite document and store it as the next version of its suite.

        Every case must name a scenario of the workspace and give inputs its signature takes;
        errors name the case (`cases[2].inputs.colour`). `must_exist` as for scenarios.
        """
        if isinstance(source, str) and text_bytes(source) > self._limits.definition_bytes:
            size = text_bytes(source)
            raise Invalid([too_big("definition", self._limits.definition_bytes, size, "bytes")])
        suite = parse_suite(source, self._scenarios.kinds, max_steps=self._limits.definition_steps)
        await self._check_cases(suite, actor.workspace_id)
        if must_exist is not None:
            existing = await self._store.latest_suite(actor.workspace_id, suite.name)
            if must_exist and existing is None:
                raise NotFound(f"suite {suite.name} not found")
            if not must_exist and existing is not None:
                raise Invalid([FieldError("name", f"suite {suite.name} exists; update it instead")])
        return await self._store.save_suite(
            actor.workspace_id,
            suite.name,
            suite.description,
            suite.tags,
            suite.source,
            actor.label,
        )

    def parsed(self, version: SuiteVersion) -> SuiteDefinition:
        """The cases of a saved version (checked when it was saved)."""
        key = (version.workspace_id, version.name, version.version)
        found = self._parsed.get(key)
        if found is None:
            found = parse_suite(version.definition, self._scenarios.kinds)
            if len(self._parsed) >= 256:
                self._parsed.clear()
            self._parsed[key] = found
        return found

    async def definition_of(self, case: SuiteCase, workspace: str) -> Definition:
        """What a case runs: its inline definition, or its scenario's latest version."""
        if case.definition is not None:
            return case.definition
        definition, _ = await self._scenarios.resolve(workspace, case.scenario, None)
        return definition

    async def _check_cases(self, suite: SuiteDefinition, workspace: str) -> None:
        errors: dict[FieldError, None] = {}  # ordered and without repeats: a matrix repeats them
        definitions: dict[str, Definition | None] = {}
        for case in suite.cases:
            for error in label_errors(case.labels, f"{case.path}.labels", self._limits.labels):
                errors[error] = None
            definition = case.definition
            if case.scenario is not None:
                if case.scenario not in definitions:
                    try:
                        definitions[case.scenario] = await self.definition_of(case, workspace)
                    except NotFound:
                        definitions[case.scenario] = None
                definition = definitions[case.scenario]
                if definition is None:
                    message = f"unknown scenario {case.scenario}"
                    errors[FieldError(f"{case.path}.scenario", message)] = None
                    continue
            assert definition is not None
            for error in input_errors(definition, case, case.inputs):
                errors[error] = None
        if errors:
            raise Invalid(list(errors))


def input_errors(
    definition: Definition, case: SuiteCase, inputs: Mapping[str, Any]
) -> list[FieldError]:
    """What is wrong with a case's inputs for `definition`, named where the case writes them."""
    try:
        bind_inputs(definition, inputs)
    except InvalidInputs as error:
        return [
            FieldError(case.input_path(e.path.removeprefix("inputs.")), e.message)
            for e in error.errors
        ]
    return []
