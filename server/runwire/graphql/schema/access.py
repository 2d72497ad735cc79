"""Access in the schema: who am I, API tokens, members, the audit trail, event-stream tickets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from runwire.domain import access, tokens
from runwire.domain.access import Permission
from runwire.errors import FieldError, Invalid, NotFound, RunwireError
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.errors import ErrorType, to_error
from runwire.graphql.schema.types import Activity

Role = strawberry.enum(access.Role, description="A role in one workspace.")
MAX_ACTIVITIES = 200


@strawberry.type(description="The caller: its workspace, role and what the role permits.")
class Viewer:
    label: str
    workspace_id: strawberry.ID
    workspace_name: str
    role: Role  # type: ignore[valid-type]
    permissions: list[str]
    expires_at: datetime | None


@strawberry.type(description="An API token; its secret is shown only by createApiToken.")
class ApiToken:
    id: strawberry.ID
    name: str
    role: Role  # type: ignore[valid-type]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: tokens.ApiToken) -> ApiToken:
        return cls(
            id=strawberry.ID(token.id),
            name=token.name,
            role=token.role,
            created_at=token.created_at,
            created_by=token.created_by,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
        )


@strawberry.type(description="A person (identity-provider subject) with a role here.")
class Member:
    subject: str
    role: Role  # type: ignore[valid-type]
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, member: tokens.Member) -> Member:
        return cls(
            subject=member.subject,
            role=member.role,
            created_at=member.created_at,
            created_by=member.created_by,
        )


@strawberry.type
class CreateApiTokenSuccess:
    token: ApiToken
    secret: str = strawberry.field(
        description="Send as `Authorization: Bearer <secret>`. Shown this once; store it now."
    )


@strawberry.type
class RevokeApiTokenSuccess:
    token: ApiToken


@strawberry.type
class MemberSuccess:
    member: Member


@strawberry.type
class RemoveMemberSuccess:
    subject: str


@strawberry.type
class EventStreamTicketSuccess:
    ticket: str
    expires_at: datetime
    url: str = strawberry.field(
        description="The SSE URL with the ticket, for EventSource, which cannot send headers."
    )


CreateApiTokenResult = Annotated[
    CreateApiTokenSuccess | ErrorType, strawberry.union("CreateApiTokenResult")
]
RevokeApiTokenResult = Annotated[
    RevokeApiTokenSuccess | ErrorType, strawberry.union("RevokeApiTokenResult")
]
MemberResult = Annotated[MemberSuccess | ErrorType, strawberry.union("MemberResult")]
RemoveMemberResult = Annotated[
    RemoveMemberSuccess | ErrorType, strawberry.union("RemoveMemberResult")
]
EventStreamTicketResult = Annotated[
    EventStreamTicketSuccess | ErrorType, strawberry.union("EventStreamTicketResult")
]


@strawberry.type
class AccessQueries:
    @strawberry.field(description="Who the token belongs to and what it may do.")
    async def viewer(self, info: Info) -> Viewer:
        actor = authorized(info, Permission.EXECUTION_READ)
        workspace = await core(info).store.access.workspace(actor.workspace_id)
        return Viewer(
            label=actor.label,
            workspace_id=strawberry.ID(actor.workspace_id),
            workspace_name=workspace.name if workspace else "",
            role=actor.role,
            permissions=sorted(p.value for p in actor.permissions),
            expires_at=actor.expires_at,
        )

    @strawberry.field(description="The workspace's API tokens, revoked ones included (admin).")
    async def api_tokens(self, info: Info) -> list[ApiToken]:
        actor = authorized(info, Permission.ADMIN)
        return [ApiToken.of(token) for token in await core(info).tokens.list_tokens(actor)]

    @strawberry.field(description="The workspace's members (admin).")
    async def members(self, info: Info) -> list[Member]:
        actor = authorized(info, Permission.ADMIN)
        return [Member.of(member) for member in await core(info).tokens.members(actor)]

    @strawberry.field(
        description="The audit trail of mutations, newest first (admin); page with `beforeId`."
    )
    async def activities(
        self,
        info: Info,
        execution_id: strawberry.ID | None = None,
        first: Annotated[int, strawberry.argument(description=f"At most {MAX_ACTIVITIES}.")] = 50,
        before_id: int | None = None,
    ) -> list[AuditEntry]:
        actor = authorized(info, Permission.ADMIN)
        if not 0 <= first <= MAX_ACTIVITIES:
            raise Invalid([FieldError("first", f"expected 0..{MAX_ACTIVITIES}")])
        found = await core(info).store.audit.activities(
            actor.workspace_id,
            execution_id=None if execution_id is None else str(execution_id),
            first=first,
            before_id=before_id,
        )
        return [AuditEntry(id=row_id, activity=Activity.of(item)) for row_id, item in found]


@strawberry.type(description="One activity with its position in the audit trail.")
class AuditEntry:
    id: int
    activity: Activity


@strawberry.input
class CreateApiTokenInput:
    name: str
    role: Role  # type: ignore[valid-type]
    expires_at: datetime | None = None


@strawberry.type
class AccessMutations:
    @strawberry.mutation(description="A new API token of this workspace (admin).")
    async def create_api_token(
        self, info: Info, input: CreateApiTokenInput
    ) -> CreateApiTokenResult:
        try:
            actor = authorized(info, Permission.ADMIN)
            issued = await core(info).tokens.create(
                actor, input.name, access.Role(input.role), input.expires_at
            )
        except RunwireError as error:
            return to_error(error)
        return CreateApiTokenSuccess(token=ApiToken.of(issued.token), secret=issued.secret)

    @strawberry.mutation(
        description="Revoke a token (admin); its live subscriptions close within seconds."
    )
    async def revoke_api_token(self, info: Info, id: strawberry.ID) -> RevokeApiTokenResult:
        try:
            actor = authorized(info, Permission.ADMIN)
            revoked = await core(info).tokens.revoke(actor, str(id))
        except RunwireError as error:
            return to_error(error)
        return RevokeApiTokenSuccess(token=ApiToken.of(revoked))

    @strawberry.mutation(description="Add a member or change its role (admin).")
    async def set_member_role(
        self,
        info: Info,
        subject: str,
        role: Role,  # type: ignore[valid-type]
    ) -> MemberResult:
        try:
            actor = authorized(info, Permission.ADMIN)
            member = await core(info).tokens.put_member(actor, subject, access.Role(role))
        except RunwireError as error:
            return to_error(error)
        return MemberSuccess(member=Member.of(member))

    @strawberry.mutation(description="Remove a member (admin).")
    async def remove_member(self, info: Info, subject: str) -> RemoveMemberResult:
        try:
            actor = authorized(info, Permission.ADMIN)
            await core(info).tokens.remove_member(actor, subject)
        except RunwireError as error:
            return to_error(error)
        return RemoveMemberSuccess(subject=subject)

    @strawberry.mutation(
        description=(
            "A ticket valid for a minute to open /executions/{id}/events without a header"
            " (browsers' EventSource); never put an API token in a URL."
        )
    )
    async def create_event_stream_ticket(
        self, info: Info, execution_id: strawberry.ID
    ) -> EventStreamTicketResult:
        try:
            actor = authorized(info, Permission.EXECUTION_READ)
            found = core(info)
            if (
                await found.store.executions.execution(
                    str(execution_id), workspace=actor.workspace_id, with_steps=False
                )
                is None
            ):
                raise NotFound(f"execution {execution_id} not found")
            ticket, expires_at = found.authenticator.issue_ticket(actor, str(execution_id))
        except RunwireError as error:
            return to_error(error)
        return EventStreamTicketSuccess(
            ticket=ticket,
            expires_at=expires_at,
            url=f"/executions/{execution_id}/events?ticket={ticket}",
        )
