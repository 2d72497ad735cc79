"""Organizations, workspaces, members, API tokens and shared secrets: their rows."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from runwire.db import tables
from runwire.db.engine import Database, optional_stored_datetime, stored_datetime
from runwire.domain.access import Role
from runwire.domain.clock import utc_now
from runwire.domain.tokens import ApiToken, IssuedToken, Member, Workspace, hash_secret, new_token
from runwire.errors import FieldError, Invalid

_BOOTSTRAP_LOCK = 0x52574254  # "RWBT": the advisory lock key of the first-start bootstrap
# Rows written before workspaces existed have this workspace id; the bootstrap adopts them.
_NO_WORKSPACE = ""
_OWNED_TABLES = ("runwire_scenario", "runwire_execution", "runwire_batch", "runwire_activity")


class AccessRepository:
    """The only code that touches the access tables."""

    def __init__(self, database: Database) -> None:
        self._database = database

    # ---- organizations and workspaces ----------------------------------------------

    async def bootstrap(self, organization: str, workspace: str) -> IssuedToken | None:
        """On an empty database: an organization, a workspace and an admin token; else None.

        Executions and scenarios stored before workspaces existed move into the new workspace.
        Processes starting together on one database create exactly one of each.
        """
        async with self._database.write():
            if self._database.is_postgres:
                await tables.Organization.raw("SELECT pg_advisory_xact_lock({})", _BOOTSTRAP_LOCK)
            if await tables.Organization.raw("SELECT id FROM runwire_organization LIMIT 1"):
                return None
            created = await self._insert_workspace(organization, workspace)
            issued = new_token(created.id, "bootstrap-admin", Role.ADMIN, "system")
            await self.insert_token(issued.token, hash_secret(issued.secret))
            for table in _OWNED_TABLES:
                await tables.Organization.raw(
                    f"UPDATE {table} SET workspace_id = {{}} WHERE workspace_id = {{}}",
                    created.id,
                    _NO_WORKSPACE,
                )
        return issued

    async def create_workspace(self, organization: str, name: str) -> Workspace:
        """A new workspace, in the named organization (created if it does not exist)."""
        async with self._database.write():
            return await self._insert_workspace(organization, name)

    async def _insert_workspace(self, organization: str, name: str) -> Workspace:
        errors = [
            FieldError(path, "expected 1..100 characters")
            for path, value in (("organization", organization), ("name", name))
            if not 0 < len(value) <= 100
        ]
        if await self.workspace(name) is not None:
            errors.append(FieldError("name", f"workspace {name} exists"))
        if errors:
            raise Invalid(errors)
        rows = await tables.Organization.raw(
            "SELECT id FROM runwire_organization WHERE name = {}", organization
        )
        now = utc_now()
        if rows:
            organization_id = rows[0]["id"]
        else:
            organization_id = str(uuid.uuid4())
            await tables.Organization.insert(
                tables.Organization(id=organization_id, name=organization, created_at=now)
            )
        workspace = Workspace(id=str(uuid.uuid4()), organization_id=organization_id, name=name)
        await tables.Workspace.insert(
            tables.Workspace(
                id=workspace.id, organization_id=organization_id, name=name, created_at=now
            )
        )
        return workspace

    async def workspace(self, id_or_name: str) -> Workspace | None:
        rows = await tables.Workspace.raw(
            "SELECT * FROM runwire_workspace WHERE id = {} OR name = {}", id_or_name, id_or_name
        )
        if not rows:
            return None
        row = rows[0]
        return Workspace(id=row["id"], organization_id=row["organization_id"], name=row["name"])

    async def workspaces(self) -> list[Workspace]:
        rows = await tables.Workspace.raw("SELECT * FROM runwire_workspace ORDER BY name")
        return [Workspace(r["id"], r["organization_id"], r["name"]) for r in rows]

    # ---- tokens ----------------------------------------------------------------------

    async def insert_token(self, token: ApiToken, secret_hash: str) -> None:
        await tables.ApiToken.insert(
            tables.ApiToken(
                id=token.id,
                workspace_id=token.workspace_id,
                name=token.name,
                role=token.role.value,
                secret_hash=secret_hash,
                created_at=token.created_at,
                created_by=token.created_by[:200],
                expires_at=token.expires_at,
            )
        )

    async def token_by_hash(self, secret_hash: str) -> ApiToken | None:
        rows = await tables.ApiToken.raw(
            "SELECT * FROM runwire_api_token WHERE secret_hash = {}", secret_hash
        )
        return _token(rows[0]) if rows else None

    async def tokens(self, workspace: str) -> list[ApiToken]:
        rows = await tables.ApiToken.raw(
            "SELECT * FROM runwire_api_token WHERE workspace_id = {} ORDER BY created_at, id",
            workspace,
        )
        return [_token(row) for row in rows]

    async def tokens_by_id(self, ids: Sequence[str]) -> dict[str, ApiToken]:
        if not ids:
            return {}
        rows = await tables.ApiToken.raw(
            f"SELECT * FROM runwire_api_token WHERE id IN ({', '.join('{}' for _ in ids)})", *ids
        )
        return {row["id"]: _token(row) for row in rows}

    async def revoke_token(self, workspace: str, token_id: str, at: datetime) -> ApiToken | None:
        """Revoke a token of the workspace (again is a no-op); None if it is not the workspace's."""
        async with self._database.write():
            await tables.ApiToken.raw(
                "UPDATE runwire_api_token SET revoked_at = COALESCE(revoked_at, {})"
                " WHERE id = {} AND workspace_id = {}",
                at,
                token_id,
                workspace,
            )
            rows = await tables.ApiToken.raw(
                "SELECT * FROM runwire_api_token WHERE id = {} AND workspace_id = {}",
                token_id,
                workspace,
            )
        return _token(rows[0]) if rows else None

    async def touch_token(self, token_id: str, at: datetime) -> None:
        await tables.ApiToken.raw(
            "UPDATE runwire_api_token SET last_used_at = {} WHERE id = {}", at, token_id
        )

    # ---- members ---------------------------------------------------------------------

    async def put_member(self, member: Member) -> Member:
        """Add the member, or change its role."""
        async with self._database.write():
            updated = await tables.Member.raw(
                "UPDATE runwire_member SET role = {} WHERE workspace_id = {} AND subject = {}"
                " RETURNING id",
                member.role.value,
                member.workspace_id,
                member.subject,
            )
            if not updated:
                await tables.Member.insert(
                    tables.Member(
                        workspace_id=member.workspace_id,
                        subject=member.subject,
                        role=member.role.value,
                        created_at=member.created_at,
                        created_by=member.created_by[:200],
                    )
                )
        found = await self.member(member.workspace_id, member.subject)
        assert found is not None
        return found

    async def remove_member(self, workspace: str, subject: str) -> bool:
        rows = await tables.Member.raw(
            "DELETE FROM runwire_member WHERE workspace_id = {} AND subject = {} RETURNING id",
            workspace,
            subject,
        )
        return bool(rows)

    async def member(self, workspace: str, subject: str) -> Member | None:
        rows = await tables.Member.raw(
            "SELECT * FROM runwire_member WHERE workspace_id = {} AND subject = {}",
            workspace,
            subject,
        )
        return _member(rows[0]) if rows else None

    async def members(self, workspace: str) -> list[Member]:
        rows = await tables.Member.raw(
            "SELECT * FROM runwire_member WHERE workspace_id = {} ORDER BY subject", workspace
        )
        return [_member(row) for row in rows]

    # ---- shared secrets --------------------------------------------------------------

    async def secret(self, name: str) -> str:
        """The deployment's secret called `name`, made on first use (every process agrees)."""
        async with self._database.write():
            rows = await tables.ServerSecret.raw(
                "SELECT value FROM runwire_server_secret WHERE name = {}", name
            )
            if rows:
                return str(rows[0]["value"])
            value = secrets.token_urlsafe(48)
            await tables.ServerSecret.raw(
                "INSERT INTO runwire_server_secret (name, value) VALUES ({}, {})"
                " ON CONFLICT (name) DO NOTHING",
                name,
                value,
            )
            rows = await tables.ServerSecret.raw(
                "SELECT value FROM runwire_server_secret WHERE name = {}", name
            )
            return str(rows[0]["value"])


def _token(row: Mapping[str, Any]) -> ApiToken:
    return ApiToken(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        role=Role(row["role"]),
        created_at=stored_datetime(row["created_at"]),
        created_by=row["created_by"],
        expires_at=optional_stored_datetime(row["expires_at"]),
        last_used_at=optional_stored_datetime(row["last_used_at"]),
        revoked_at=optional_stored_datetime(row["revoked_at"]),
    )


def _member(row: Mapping[str, Any]) -> Member:
    return Member(
        workspace_id=row["workspace_id"],
        subject=row["subject"],
        role=Role(row["role"]),
        created_at=stored_datetime(row["created_at"]),
        created_by=row["created_by"],
    )
