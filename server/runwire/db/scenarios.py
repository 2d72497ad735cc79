"""Scenarios: the versions of each named definition, per workspace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runwire.db import tables
from runwire.db.engine import Database
from runwire.db.rows import canonical, dump, scenario_of
from runwire.domain.clock import utc_now
from runwire.domain.models import ScenarioVersion

_SCENARIO_LOCK = 0x52575343  # "RWSC": with a hash of workspace/name, one lock per scenario


class ScenarioRepository:
    """The only code that touches runwire_scenario."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def save_scenario(
        self,
        workspace: str,
        name: str,
        description: str,
        definition: Mapping[str, Any],
        actor: str,
    ) -> ScenarioVersion:
        """Store `definition` as the next version of `name`, unless it equals the latest."""
        async with self._database.write():
            if self._database.is_postgres:
                # Read-then-insert: two writers of one name (replicas loading the shipped
                # scenarios as they start together) would both take the same next version.
                # SQLite's IMMEDIATE write transaction already queues them.
                await self._database.fetch(
                    "SELECT pg_advisory_xact_lock({}, hashtext({}))",
                    _SCENARIO_LOCK,
                    f"{workspace}/{name}",
                )
            latest = await self.latest_scenario(workspace, name)
            if latest is not None and canonical(latest.definition) == canonical(definition):
                return latest
            version = 1 if latest is None else latest.version + 1
            row = tables.Scenario(
                workspace_id=workspace,
                name=name,
                version=version,
                description=description,
                definition=dump(definition),
                created_at=utc_now(),
                created_by=actor,
            )
            await row.save()
        return scenario_of(row.to_dict())

    async def latest_scenario(self, workspace: str, name: str) -> ScenarioVersion | None:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_scenario WHERE workspace_id = {} AND name = {}"
            " ORDER BY version DESC LIMIT 1",
            workspace,
            name,
        )
        return scenario_of(rows[0]) if rows else None

    async def scenario_version(
        self, workspace: str, name: str, version: int
    ) -> ScenarioVersion | None:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_scenario WHERE workspace_id = {} AND name = {} AND version = {}",
            workspace,
            name,
            version,
        )
        return scenario_of(rows[0]) if rows else None

    async def scenarios(self, workspace: str) -> list[ScenarioVersion]:
        """The latest version of every scenario of the workspace, by name."""
        rows = await self._database.fetch(
            "SELECT s.* FROM runwire_scenario s WHERE s.workspace_id = {} AND s.version ="
            " (SELECT MAX(version) FROM runwire_scenario l"
            " WHERE l.workspace_id = s.workspace_id AND l.name = s.name)"
            " ORDER BY s.name",
            workspace,
        )
        return [scenario_of(row) for row in rows]
