"""Artifacts of step attempts: their rows, content included (see domain/artifacts.py)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from runwire.db.engine import Database, stored_datetime
from runwire.domain.artifacts import Artifact

_INFO = "id, workspace_id, execution_id, step_key, attempt, name, media_type, bytes, created_at"


class ArtifactRepository:
    """The only code that touches runwire_artifact."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def put_artifact(
        self,
        execution_id: str,
        step_key: str,
        attempt: int,
        name: str,
        media_type: str,
        content: bytes,
        at: datetime,
        generation: int | None,
    ) -> Artifact | None:
        """Store it, or replace the attempt's artifact of that name (keeping its id).

        With a `generation`, only while the execution's lease still has it: a runner that lost
        the execution to another cannot add to what its successor stores (as for events).
        """
        fenced = "" if generation is None else " AND lease_generation = {}"
        rows = await self._database.fetch(
            "INSERT INTO runwire_artifact (id, workspace_id, execution_id, step_key, attempt,"
            " name, media_type, bytes, content, created_at)"
            " SELECT {}, workspace_id, id, {}, {}, {}, {}, {}, {}, {} FROM runwire_execution"
            " WHERE id = {}" + fenced + " ON CONFLICT (execution_id, step_key, attempt, name)"
            " DO UPDATE SET media_type = excluded.media_type, bytes = excluded.bytes,"
            " content = excluded.content, created_at = excluded.created_at"
            f" RETURNING {_INFO}",
            str(uuid.uuid4()),
            step_key,
            attempt,
            name,
            media_type,
            len(content),
            content,
            at,
            execution_id,
            *(() if generation is None else (generation,)),
        )
        return _artifact(rows[0]) if rows else None

    async def artifacts(self, execution_id: str, step_key: str, attempt: int) -> list[Artifact]:
        """One attempt's artifacts by name, without their content."""
        rows = await self._database.fetch(
            f"SELECT {_INFO} FROM runwire_artifact"
            " WHERE execution_id = {} AND step_key = {} AND attempt = {} ORDER BY name",
            execution_id,
            step_key,
            attempt,
        )
        return [_artifact(row) for row in rows]

    async def artifact_content(self, id: str, workspace: str) -> tuple[Artifact, bytes] | None:
        """An artifact of the workspace with its content; None if it has no such one."""
        rows = await self._database.fetch(
            f"SELECT {_INFO}, content FROM runwire_artifact"
            " WHERE id = {} AND workspace_id = {}",
            id,
            workspace,
        )
        if not rows:
            return None
        return _artifact(rows[0]), bytes(rows[0]["content"])

    async def delete_artifacts_before(self, cutoff: datetime) -> int:
        rows = await self._database.fetch(
            "DELETE FROM runwire_artifact WHERE created_at < {} RETURNING id", cutoff
        )
        return len(rows)


def _artifact(row: Mapping[str, Any]) -> Artifact:
    return Artifact(
        id=row["id"],
        workspace_id=row["workspace_id"],
        execution_id=row["execution_id"],
        step_key=row["step_key"],
        attempt=int(row["attempt"]),
        name=row["name"],
        media_type=row["media_type"],
        bytes=int(row["bytes"]),
        created_at=stored_datetime(row["created_at"]),
    )
