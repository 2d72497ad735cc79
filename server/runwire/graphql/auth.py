"""The GraphQL side of access: who is asking, what they may do, and the audit of mutations.

Denials carry `extensions.code` (FORBIDDEN, UNAUTHENTICATED) from the exceptions themselves, so
queries, mutations and subscriptions report them alike.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from graphql import GraphQLResolveInfo
from strawberry.extensions import SchemaExtension

from runwire.domain.access import Actor, Permission, Unauthenticated
from runwire.domain.clock import utc_now
from runwire.domain.models import Activity
from runwire.graphql.context import Info

logger = logging.getLogger(__name__)

# Arguments worth keeping in the audit trail: identifiers and names, never definitions, inputs
# or anything that could carry a secret.
_AUDITED_ARGUMENTS = ("id", "executionId", "stepKey", "subject", "role", "name", "reason")


def authorized(info: Info, permission: Permission) -> Actor:
    """The caller, if their role grants `permission`; every resolver starts here."""
    actor = info.context.get("actor")
    if not isinstance(actor, Actor):
        raise Unauthenticated()
    actor.require(permission)
    return actor


class AuditMutations(SchemaExtension):
    """Records an activity for every mutation: who, what, when, and the result's type."""

    def resolve(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: GraphQLResolveInfo[Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        result = _next(root, info, *args, **kwargs)
        if info.parent_type.name != "Mutation":
            return result
        return _audited(result, info.context, info.field_name, kwargs)


async def _audited(result: Any, context: Any, mutation: str, arguments: dict[str, Any]) -> Any:
    try:
        value = await result if inspect.isawaitable(result) else result
    except Exception:
        await _record(context, mutation, arguments, None, "InternalError")
        raise
    await _record(context, mutation, arguments, value, type(value).__name__)
    return value


async def _record(
    context: Any, mutation: str, arguments: dict[str, Any], value: Any, outcome: str
) -> None:
    actor = context.get("actor")
    if not isinstance(actor, Actor):
        return  # unauthenticated requests never reach a resolver; nothing to attribute
    # GraphQL argument names and values, as the client sent them.
    detail: dict[str, Any] = {
        key: arguments[key]
        for key in _AUDITED_ARGUMENTS
        if isinstance(arguments.get(key), str | int)
    }
    given = arguments.get("input")
    if isinstance(given, dict) and isinstance(given.get("scenario"), str):
        detail["scenario"] = given["scenario"]
    if isinstance(message := getattr(value, "message", None), str):
        detail["message"] = message
    # What an admin mutation acted on (never the new token's secret, only its id).
    if (token_id := getattr(getattr(value, "token", None), "id", None)) is not None:
        detail["tokenId"] = str(token_id)
    execution_id = arguments.get("executionId") or _execution_id(value)
    if execution_id is None and mutation in _EXECUTION_ID_MUTATIONS:
        execution_id = arguments.get("id")
    activity = Activity(
        action=mutation,
        actor=actor.label,
        execution_id=None if execution_id is None else str(execution_id),
        at=utc_now(),
        detail=detail,
        result=outcome,
        workspace_id=actor.workspace_id,
    )
    try:
        await context["services"].repository.record_activity(activity)
    except Exception:
        # The mutation has happened; failing it now would make the client retry a done thing.
        logger.exception("recording the activity of %s failed", mutation)


# Mutations whose `id` argument is an execution id.
_EXECUTION_ID_MUTATIONS = frozenset({"stopExecution", "pauseExecution", "resumeExecution"})


def _execution_id(value: Any) -> str | None:
    execution = getattr(value, "execution", None)
    found = getattr(execution, "id", None)
    return None if found is None else str(found)
