"""Workspace secrets in the schema: set, delete, list names. No field ever returns a value."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from runwire.domain.access import Permission
from runwire.domain.models import SecretInfo
from runwire.errors import RunwireError
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.errors import ErrorType, to_error


@strawberry.type(description="A workspace secret, by name; its value is write-only.")
class Secret:
    name: str
    created_at: datetime
    updated_at: datetime
    updated_by: str

    @classmethod
    def of(cls, info: SecretInfo) -> Secret:
        return cls(
            name=info.name,
            created_at=info.created_at,
            updated_at=info.updated_at,
            updated_by=info.updated_by,
        )


@strawberry.type
class SetSecretSuccess:
    secret: Secret


@strawberry.type
class DeleteSecretSuccess:
    name: str


SetSecretResult = Annotated[SetSecretSuccess | ErrorType, strawberry.union("SetSecretResult")]
DeleteSecretResult = Annotated[
    DeleteSecretSuccess | ErrorType, strawberry.union("DeleteSecretResult")
]


@strawberry.type
class SecretQueries:
    @strawberry.field(
        description="The workspace's secrets by name, never their values (scenario:write)."
    )
    async def secrets(self, info: Info) -> list[Secret]:
        actor = authorized(info, Permission.SCENARIO_WRITE)
        return [Secret.of(found) for found in await core(info).secrets.list(actor)]


@strawberry.type
class SecretMutations:
    @strawberry.mutation(
        description=(
            "Create a secret or replace its value (admin). Steps that name it in `secrets:` get"
            " it in their environment; its value is masked in their output. Write-only."
        )
    )
    async def set_secret(
        self,
        info: Info,
        name: Annotated[str, strawberry.argument(description="Like an environment variable.")],
        value: Annotated[str, strawberry.argument(description="1 byte to 64 KiB, no NUL.")],
    ) -> SetSecretResult:
        try:
            actor = authorized(info, Permission.ADMIN)
            found = await core(info).secrets.set(actor, name, value)
        except RunwireError as error:
            return to_error(error)
        return SetSecretSuccess(secret=Secret.of(found))

    @strawberry.mutation(
        description="Delete a secret (admin); executions that name it can no longer start."
    )
    async def delete_secret(self, info: Info, name: str) -> DeleteSecretResult:
        try:
            actor = authorized(info, Permission.ADMIN)
            await core(info).secrets.delete(actor, name)
        except RunwireError as error:
            return to_error(error)
        return DeleteSecretSuccess(name=name)
