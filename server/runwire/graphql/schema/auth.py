"""The GraphQL side of access: who is asking, what they may do, and the audit of mutations.

A denial raised as a GraphQL error carries `extensions.code` (FORBIDDEN, UNAUTHENTICATED), added
by the schema for every operation type alike (see `errors.error_extensions`).
"""

from __future__ import annotations

import logging
from typing import Any

from strawberry.extensions import FieldExtension
from strawberry.extensions.field_extension import AsyncExtensionResolver
from strawberry.types.base import get_object_definition

from runwire.domain.access import Actor, Permission, Unauthenticated
from runwire.domain.clock import utc_now
from runwire.domain.models import Activity, Execution
from runwire.errors import Unavailable
from runwire.faults import report
from runwire.graphql.schema.context import Info

logger = logging.getLogger(__name__)

# Arguments worth keeping in the audit trail: identifiers and names, never definitions, inputs
# or anything that could carry a secret.
_AUDITED_ARGUMENTS = (
    "id",
    "executionId",
    "stepKey",
    "subject",
    "role",
    "name",
    "reason",
    "decision",
)


def authorized(info: Info, permission: Permission) -> Actor:
    """The caller, if their role grants `permission`; every resolver starts here."""
    actor = info.context.get("actor")
    if not isinstance(actor, Actor):
        if info.context.get("unavailable"):
            raise Unavailable()  # the socket's credential could not be checked (see controller)
        raise Unauthenticated()
    actor.require(permission)
    return actor


class AuditedMutation(FieldExtension):
    """Records an activity for the mutation it is on: who, what, when, and the result's type.

    A field extension on the mutations only, not a schema-wide resolve hook: that would wrap
    every field of every query and every delivered subscription event.
    """

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: Info, **kwargs: Any
    ) -> Any:
        # GraphQL argument names, as the client sent them (execution_id -> executionId).
        arguments = {_camel(name): value for name, value in kwargs.items()}
        # Mutations run one after another (GraphQL's rule), so one slot per request suffices.
        pending = info.context[_PENDING] = PendingAudit(info.context, info.field_name, arguments)
        try:
            value = await next_(source, info, **kwargs)
        except Exception:
            await _record(info.context, info.field_name, arguments, None, "InternalError")
            raise
        finally:
            del info.context[_PENDING]
        if pending.stored_as is not None and pending.stored_as == type(value).__name__:
            return value  # stored with the mutation's own write (see `audit_with_write`)
        await _record(info.context, info.field_name, arguments, value, type(value).__name__)
        return value


_PENDING = "runwire.pending_audit"


class PendingAudit:
    """The audit of the mutation being resolved, for a service to store with its own write.

    The resolver names the result type it will answer with once the write is done; if the
    service says the record was stored and that is the answer, the extension records nothing.
    """

    def __init__(self, context: Any, mutation: str, arguments: dict[str, Any]) -> None:
        self._context = context
        self._mutation = mutation
        self._arguments = arguments
        self.outcome = ""
        self.stored_as: str | None = None

    def activity(self, execution: Execution) -> Activity:
        activity = _activity(
            self._context, self._mutation, self._arguments, None, self.outcome, execution.id
        )
        assert activity is not None, "a resolver's audit has an actor (see `audit_with_write`)"
        return activity

    def stored(self) -> None:
        self.stored_as = self.outcome


def audit_with_write(info: Info, outcome: type) -> PendingAudit | None:
    """The mutation's audit record, to be stored with its write when it answers `outcome`."""
    pending = info.context.get(_PENDING)
    if not isinstance(pending, PendingAudit) or not isinstance(info.context.get("actor"), Actor):
        return None
    pending.outcome = outcome.__name__
    return pending


def audit_every_field(mutation_type: type) -> None:
    """Put `AuditedMutation` on every field of the schema's Mutation type, inherited ones too."""
    for field in get_object_definition(mutation_type, strict=True).fields:
        field.extensions.append(AuditedMutation())


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


async def _record(
    context: Any, mutation: str, arguments: dict[str, Any], value: Any, outcome: str
) -> None:
    activity = _activity(context, mutation, arguments, value, outcome)
    if activity is None:
        return  # unauthenticated requests never reach a resolver; nothing to attribute
    try:
        await context["services"].core.store.audit.record_activity(activity)
    except Exception as error:
        # The mutation has happened; failing it now would make the client retry a done thing.
        report(logger, f"recording the activity of {mutation}", error)


def _activity(
    context: Any,
    mutation: str,
    arguments: dict[str, Any],
    value: Any,
    outcome: str,
    execution_id: str | None = None,
) -> Activity | None:
    actor = context.get("actor")
    if not isinstance(actor, Actor):
        return None
    detail: dict[str, Any] = {
        key: arguments[key]
        for key in _AUDITED_ARGUMENTS
        if isinstance(arguments.get(key), str | int)
    }
    if isinstance(scenario := getattr(arguments.get("input"), "scenario", None), str):
        detail["scenario"] = scenario
    if isinstance(message := getattr(value, "message", None), str):
        detail["message"] = message
    # What an admin mutation acted on (never the new token's secret, only its id).
    if (token_id := getattr(getattr(value, "token", None), "id", None)) is not None:
        detail["tokenId"] = str(token_id)
    execution_id = execution_id or arguments.get("executionId") or _execution_id(value)
    if execution_id is None and mutation in _EXECUTION_ID_MUTATIONS:
        execution_id = arguments.get("id")
    return Activity(
        action=mutation,
        actor=actor.label,
        execution_id=None if execution_id is None else str(execution_id),
        at=utc_now(),
        detail=detail,
        result=outcome,
        workspace_id=actor.workspace_id,
    )


# Mutations whose `id` argument is an execution id.
_EXECUTION_ID_MUTATIONS = frozenset(
    {"stopExecution", "pauseExecution", "resumeExecution", "deleteExecution"}
)


def _execution_id(value: Any) -> str | None:
    execution = getattr(value, "execution", None)
    found = getattr(execution, "id", None)
    return None if found is None else str(found)
