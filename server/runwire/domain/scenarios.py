"""Save scenarios as versions, and resolve what a start or batch runs: the rules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from runwire.domain.access import Actor
from runwire.domain.models import ScenarioVersion
from runwire.domain.ports import ScenarioStore
from runwire.errors import FieldError, Invalid, NotFound
from runwire.scenarios.definition import Definition, DefinitionCache, ParamsParser, parse_definition
from runwire.scenarios.limits import DEFAULT_LIMITS, InputLimits, text_bytes, too_big

T = TypeVar("T")

# Texts shorter than this are parsed on the event loop (a few milliseconds, and then cached);
# longer ones in a worker thread, where a slow parse delays no one else's request.
ON_LOOP_CHARS = 2_048
# Large definitions parsed at once. A parse holds a worker thread and, being pure Python, the
# GIL for stretches: a burst of them must neither take every thread of the default executor
# nor crowd out the event loop. The rest wait their turn.
PARSERS = 2


class ScenarioService:
    """The only way scenarios are saved, and definitions to run are found."""

    def __init__(
        self,
        store: ScenarioStore,
        kinds: Mapping[str, ParamsParser],
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> None:
        self._store = store
        self._kinds = kinds
        self._limits = limits
        self._definitions = DefinitionCache(kinds, max_steps=limits.definition_steps)
        self._parsing = asyncio.Semaphore(PARSERS)

    @property
    def kinds(self) -> Mapping[str, ParamsParser]:
        return self._kinds

    async def save(
        self, source: str | Mapping[str, Any], actor: Actor, *, must_exist: bool | None = None
    ) -> ScenarioVersion:
        """Validate and store a definition as the next version of its scenario.

        `must_exist` True refuses a new name (update), False an existing one (create). A text
        is a client's and is held to the limits; a mapping is the server's own (a scenario file).
        """
        if isinstance(source, str):
            definition = await self._parse_text(source)
        else:
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
            found = self._definitions.get(key)
            if found is None:
                found = await self._off_loop(self._definitions.parse_source, scenario.definition)
                self._definitions.put(key, found)
            return found, scenario
        assert text is not None
        return await self._parse_text(text), None

    async def _parse_text(self, text: str) -> Definition:
        """A client's definition text: refused by size before any parsing, else parsed once."""
        size = text_bytes(text)
        if size > self._limits.definition_bytes:
            raise Invalid([too_big("definition", self._limits.definition_bytes, size, "bytes")])
        found = self._definitions.get(text)
        if found is None:
            if len(text) < ON_LOOP_CHARS:
                found = self._definitions.parse_text(text)
            else:
                found = await self._off_loop(self._definitions.parse_text, text)
            self._definitions.put(text, found)
        return found

    async def _off_loop(self, parse: Callable[[T], Definition], argument: T) -> Definition:
        async with self._parsing:
            return await asyncio.to_thread(parse, argument)
