"""Workspace secrets: set, delete and list by name; their values go only to steps naming them.

Values are write-only: nothing here returns one to a caller, only `SecretStore.secret_values`
gives them to the runner. They are stored as given (not encrypted): every process that runs
steps must read them, so a key would sit beside the database URL; see README "Secrets".
"""

from __future__ import annotations

from collections.abc import Iterable

from runwire.domain.access import Actor, Permission
from runwire.domain.clock import utc_now
from runwire.domain.models import SecretInfo
from runwire.domain.ports import SecretStore
from runwire.errors import FieldError, Invalid, NotFound
from runwire.scenarios.definition import SECRET_NAME, SECRET_NAME_RULE, Definition

MAX_SECRET_BYTES = 64 * 1024


def name_errors(name: str, path: str = "name") -> list[FieldError]:
    if SECRET_NAME.fullmatch(name):
        return []
    return [FieldError(path, f"a secret name is {SECRET_NAME_RULE}")]


def value_errors(value: str, path: str = "value") -> list[FieldError]:
    """Bounded, storable in both databases, and redactable (never empty)."""
    if not value:
        return [FieldError(path, "must not be empty")]
    if "\x00" in value:
        return [FieldError(path, "must not contain NUL")]
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        return [FieldError(path, "must be valid Unicode (no lone surrogates)")]
    if size > MAX_SECRET_BYTES:
        return [FieldError(path, f"at most {MAX_SECRET_BYTES} bytes in UTF-8, got {size}")]
    return []


def declared_secrets(definition: Definition, only: str | None = None) -> Iterable[tuple[str, str]]:
    """(path, name) of every secret the definition's steps (or step `only`) name."""
    for step in definition.steps:
        if only is not None and step.key != only:
            continue
        for j, name in enumerate(step.secrets):
            yield f"steps[{step.position}].secrets[{j}]", name


class SecretService:
    """The only way secrets are written; set and delete need `admin`, listing `scenario:write`."""

    def __init__(self, store: SecretStore) -> None:
        self._store = store

    async def set(self, actor: Actor, name: str, value: str) -> SecretInfo:
        """Create the secret, or replace its value."""
        actor.require(Permission.ADMIN)
        errors = name_errors(name) + value_errors(value)
        if errors:
            raise Invalid(errors)
        return await self._store.put_secret(actor.workspace_id, name, value, actor.label, utc_now())

    async def delete(self, actor: Actor, name: str) -> None:
        actor.require(Permission.ADMIN)
        if not await self._store.delete_secret(actor.workspace_id, name):
            raise NotFound(f"secret {name} not found")

    async def list(self, actor: Actor) -> list[SecretInfo]:
        """The workspace's secrets by name, without values."""
        actor.require(Permission.SCENARIO_WRITE)
        return await self._store.secrets(actor.workspace_id)


async def missing_secrets(
    store: SecretStore, workspace: str, definition: Definition, only: str | None = None
) -> list[FieldError]:
    """A FieldError at each `steps[i].secrets[j]` naming a secret the workspace does not have."""
    declared = list(declared_secrets(definition, only))
    if not declared:
        return []
    present = await store.existing_secrets(workspace, sorted({name for _, name in declared}))
    return [
        FieldError(path, f"no secret {name} in this workspace")
        for path, name in declared
        if name not in present
    ]
