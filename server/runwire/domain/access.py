"""Who may do what: roles, the permissions they grant, and the actor behind every request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from runwire.errors import RunwireError


class Permission(StrEnum):
    """What resolvers check; roles are only bundles of these."""

    EXECUTION_READ = "execution:read"
    EXECUTION_WRITE = "execution:write"
    # Deciding `review` steps (submitReview): a reviewer need not steer or start anything.
    REVIEW_WRITE = "review:write"
    SCENARIO_WRITE = "scenario:write"
    # Deleting history cannot be undone, and audits or comparisons may rest on it: admin only
    # by default (README "Deletion and retention").
    TEST_DELETE = "test:delete"
    ADMIN = "admin"


class Role(StrEnum):
    """A member's or token's role in one workspace; each includes the ones before it."""

    VIEWER = "viewer"
    REVIEWER = "reviewer"
    OPERATOR = "operator"
    EDITOR = "editor"
    ADMIN = "admin"

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self]


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({P.EXECUTION_READ}),
    Role.REVIEWER: frozenset({P.EXECUTION_READ, P.REVIEW_WRITE}),
    Role.OPERATOR: frozenset({P.EXECUTION_READ, P.REVIEW_WRITE, P.EXECUTION_WRITE}),
    Role.EDITOR: frozenset({P.EXECUTION_READ, P.REVIEW_WRITE, P.EXECUTION_WRITE, P.SCENARIO_WRITE}),
    Role.ADMIN: frozenset(P),
}


class Unauthenticated(RunwireError):
    """A valid API token or identity-provider token is required."""


class Forbidden(RunwireError):
    """The token's role does not grant this."""

    def __init__(self, permission: Permission, role: Role) -> None:
        self.permission = permission
        self.role = role
        super().__init__(f"permission {permission.value} required; role {role.value} lacks it")


@dataclass(frozen=True, slots=True)
class Actor:
    """An authenticated caller, confined to one workspace.

    `label` is what history and the audit trail show (`token:ci-bot`, `user:alice`); `token_id`
    is set for API tokens, so revoking one reaches its live subscriptions.
    """

    workspace_id: str
    label: str
    role: Role
    token_id: str | None = None
    expires_at: datetime | None = None
    # Set when the role comes from the subject's membership, so a change to it reaches live
    # connections too.
    member_subject: str | None = None

    @property
    def permissions(self) -> frozenset[Permission]:
        return self.role.permissions

    def can(self, permission: Permission) -> bool:
        return permission in self.role.permissions

    def require(self, permission: Permission) -> None:
        """Raise `Forbidden` unless the role grants `permission`."""
        if not self.can(permission):
            raise Forbidden(permission, self.role)


def system_actor(workspace_id: str) -> Actor:
    """The server itself, loading shipped and configured scenarios at start."""
    return Actor(workspace_id=workspace_id, label="system", role=Role.ADMIN)
