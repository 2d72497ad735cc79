"""Workspace secrets: their rows. Values are read only by `secret_values` (for the runner)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from runwire.db.engine import Database, stored_datetime
from runwire.domain.models import SecretInfo


class SecretRepository:
    """The only code that touches runwire_workspace_secret."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def put_secret(
        self, workspace: str, name: str, value: str, actor: str, at: datetime
    ) -> SecretInfo:
        # One statement on both databases: two concurrent sets of one name never conflict.
        rows = await self._database.fetch(
            "INSERT INTO runwire_workspace_secret"
            " (workspace_id, name, value, created_at, updated_at, updated_by)"
            " VALUES ({}, {}, {}, {}, {}, {})"
            " ON CONFLICT (workspace_id, name) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at, updated_by = excluded.updated_by"
            " RETURNING name, created_at, updated_at, updated_by",
            workspace,
            name,
            value,
            at,
            at,
            actor[:200],
        )
        return _info(rows[0])

    async def delete_secret(self, workspace: str, name: str) -> bool:
        rows = await self._database.fetch(
            "DELETE FROM runwire_workspace_secret WHERE workspace_id = {} AND name = {}"
            " RETURNING id",
            workspace,
            name,
        )
        return bool(rows)

    async def secrets(self, workspace: str) -> list[SecretInfo]:
        rows = await self._database.fetch(
            "SELECT name, created_at, updated_at, updated_by FROM runwire_workspace_secret"
            " WHERE workspace_id = {} ORDER BY name",
            workspace,
        )
        return [_info(row) for row in rows]

    async def existing_secrets(self, workspace: str, names: Sequence[str]) -> set[str]:
        return set(await self._values(workspace, names, "name"))

    async def secret_values(self, workspace: str, names: Sequence[str]) -> dict[str, str]:
        return await self._values(workspace, names, "value")

    async def _values(self, workspace: str, names: Sequence[str], column: str) -> dict[str, str]:
        if not names:
            return {}
        rows = await self._database.fetch(
            f"SELECT name, {column} AS found FROM runwire_workspace_secret"
            f" WHERE workspace_id = {{}} AND name IN ({', '.join('{}' for _ in names)})",
            workspace,
            *names,
        )
        return {str(row["name"]): str(row["found"]) for row in rows}


def _info(row: Mapping[str, Any]) -> SecretInfo:
    return SecretInfo(
        name=row["name"],
        created_at=stored_datetime(row["created_at"]),
        updated_at=stored_datetime(row["updated_at"]),
        updated_by=row["updated_by"],
    )
