"""Suites: the versions of each named suite, per workspace."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runwire.db import tables
from runwire.db.engine import Database
from runwire.db.rows import canonical, dump, suite_of
from runwire.domain.clock import utc_now
from runwire.domain.models import SuiteVersion

_SUITE_LOCK = 0x52575355  # "RWSU": with a hash of workspace/name, one lock per suite


class SuiteRepository:
    """The only code that touches runwire_suite."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def save_suite(
        self,
        workspace: str,
        name: str,
        description: str,
        tags: Sequence[str],
        definition: Mapping[str, Any],
        actor: str,
    ) -> SuiteVersion:
        """Store `definition` as the next version of `name`, unless it equals the latest."""
        async with self._database.write():
            if self._database.is_postgres:
                # Read-then-insert, as for scenarios: two writers of one name would both take
                # the same next version. SQLite's IMMEDIATE write transaction queues them.
                await self._database.fetch(
                    "SELECT pg_advisory_xact_lock({}, hashtext({}))",
                    _SUITE_LOCK,
                    f"{workspace}/{name}",
                )
            latest = await self.latest_suite(workspace, name)
            if latest is not None and canonical(latest.definition) == canonical(definition):
                return latest
            row = tables.Suite(
                workspace_id=workspace,
                name=name,
                version=1 if latest is None else latest.version + 1,
                description=description,
                tags=dump(list(tags)),
                definition=dump(definition),
                created_at=utc_now(),
                created_by=actor[:200],
            )
            await row.save()
        return suite_of(row.to_dict())

    async def latest_suite(self, workspace: str, name: str) -> SuiteVersion | None:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_suite WHERE workspace_id = {} AND name = {}"
            " ORDER BY version DESC LIMIT 1",
            workspace,
            name,
        )
        return suite_of(rows[0]) if rows else None

    async def suite_version(self, workspace: str, name: str, version: int) -> SuiteVersion | None:
        rows = await self._database.fetch(
            "SELECT * FROM runwire_suite WHERE workspace_id = {} AND name = {} AND version = {}",
            workspace,
            name,
            version,
        )
        return suite_of(rows[0]) if rows else None

    async def suites(self, workspace: str, tag: str | None = None) -> list[SuiteVersion]:
        """The latest version of every suite of the workspace (with `tag`, if given), by name."""
        rows = await self._database.fetch(
            "SELECT s.* FROM runwire_suite s WHERE s.workspace_id = {} AND s.version ="
            " (SELECT MAX(version) FROM runwire_suite l"
            " WHERE l.workspace_id = s.workspace_id AND l.name = s.name)"
            " ORDER BY s.name",
            workspace,
        )
        found = [suite_of(row) for row in rows]
        return [suite for suite in found if tag is None or tag in suite.tags]
