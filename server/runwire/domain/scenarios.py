"""Save scenarios as versions, and resolve what a start or batch runs: the rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runwire.domain.access import Actor
from runwire.domain.models import ScenarioVersion
from runwire.domain.ports import ScenarioStore
from runwire.errors import FieldError, Invalid, NotFound
from runwire.scenarios.definition import Definition, DefinitionCache, ParamsParser, parse_definition


class ScenarioService:
    """The only way scenarios are saved, and definitions to run are found."""

    def __init__(self, store: ScenarioStore, kinds: Mapping[str, ParamsParser]) -> None:
        self._store = store
        self._kinds = kinds
        self._definitions = DefinitionCache(kinds)

    @property
    def kinds(self) -> Mapping[str, ParamsParser]:
        return self._kinds

    async def save(
        self, source: str | Mapping[str, Any], actor: Actor, *, must_exist: bool | None = None
    ) -> ScenarioVersion:
        """Validate and store a definition as the next version of its scenario.

        `must_exist` True refuses a new name (update), False an existing one (create).
        """
        definition = parse_definition(source, self._kinds)
        if must_exist is not None:
            existing = await self._store.latest_scenario(actor.workspace_id, definition.name)
            if must_exist and existing is None:
                raise NotFound(f"scenario {definition.name} not found")
            if not must_exist and existing is not None:
                raise Invalid(
                    [FieldError("name", f"scenario {definition.name} exists; update it instead")]
                )
        return await self._store.save_scenario(
            actor.workspace_id,
            definition.name,
            definition.description,
            definition.source,
            actor.label,
        )

    async def resolve(
        self, workspace: str, scenario_name: str | None, text: str | None
    ) -> tuple[Definition, ScenarioVersion | None]:
        """The definition to run: the latest version of the workspace's scenario, or inline text."""
        if (scenario_name is None) == (text is None):
            raise Invalid([FieldError("input", "give exactly one of scenario or definition")])
        if scenario_name is not None:
            scenario = await self._store.latest_scenario(workspace, scenario_name)
            if scenario is None:
                raise NotFound(f"scenario {scenario_name} not found")
            # A stored version never changes, so its parse is reusable under its identity.
            key = (workspace, scenario.name, scenario.version)
            return self._definitions.parse_version(key, scenario.definition), scenario
        assert text is not None
        return self._definitions.parse(text), None
