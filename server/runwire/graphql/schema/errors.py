"""The domain's exception tree in GraphQL: result-union error types, and error codes.

The domain names an invalid field by its own name (`timeout_seconds`, `upstream.login`,
`runs[2].inputs.count`); the schema's clients know the argument by its GraphQL name
(`timeoutSeconds`). `schema_paths` renames the leading field the way the schema does, and
leaves the rest alone: what follows is the client's own data (input names) or a definition's
YAML keys, which keep their spelling.
"""

from __future__ import annotations

import re

import strawberry
from strawberry.utils.str_converters import to_camel_case

from runwire.domain.access import Forbidden, Unauthenticated
from runwire.errors import (
    FieldError,
    Invalid,
    InvalidDefinition,
    InvalidTransition,
    NotFound,
    RunwireError,
    Unavailable,
)
from runwire.faults import is_outage


@strawberry.interface(description="Every expected failure has a human-readable message.")
class Error:
    message: str


@strawberry.type(description="One invalid field, named by its path.")
class FieldErrorType:
    path: str
    message: str


@strawberry.type
class ValidationError(Error):
    field_errors: list[FieldErrorType]


@strawberry.type
class NotFoundError(Error):
    pass


@strawberry.type(description="The execution, or the named step, is in a state that forbids this.")
class InvalidTransitionError(Error):
    current_status: str
    step_key: str | None = None
    step_status: str | None = None


@strawberry.type(description="The token's role does not grant the permission this needs.")
class PermissionDeniedError(Error):
    permission: str
    role: str


ErrorType = ValidationError | NotFoundError | InvalidTransitionError | PermissionDeniedError


_LEADING_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def schema_paths(error: Invalid, prefix: str = "") -> Invalid:
    """`error` with each path's leading field named as in the schema, under `prefix`.

    A definition's errors are paths into the definition's own YAML, and stay as they are.
    """
    if isinstance(error, InvalidDefinition):
        return error
    renamed = [FieldError(_schema_path(e.path, prefix), e.message) for e in error.errors]
    default_message = "; ".join(str(e) for e in error.errors)
    message = None if error.message == default_message else error.message
    return type(error)(renamed, message)


def _schema_path(path: str, prefix: str) -> str:
    leading = _LEADING_FIELD.match(path)
    if leading is not None:
        path = to_camel_case(leading.group()) + path[leading.end() :]
    return prefix + path


def to_error(error: RunwireError) -> ErrorType:
    """Map a domain error to its schema type; anything unexpected re-raises (and is masked)."""
    if isinstance(error, Invalid):
        error = schema_paths(error)
        return ValidationError(
            message=error.message,
            field_errors=[FieldErrorType(path=e.path, message=e.message) for e in error.errors],
        )
    if isinstance(error, NotFound):
        return NotFoundError(message=error.message)
    if isinstance(error, Forbidden):
        return PermissionDeniedError(
            message=error.message, permission=error.permission.value, role=error.role.value
        )
    if isinstance(error, InvalidTransition):
        return InvalidTransitionError(
            message=error.message,
            current_status=error.current_status,
            step_key=error.step_key,
            step_status=error.step_status,
        )
    raise error


def error_extensions(error: BaseException | None) -> dict[str, str] | None:
    """The `extensions` of a domain error raised as a GraphQL error: its code, for clients."""
    # A query or subscription has no result union: a denied or missing object is an error that
    # clients tell apart by `extensions.code`. UNAVAILABLE says: the same request may work when
    # tried again shortly (the database or the bus is out of reach).
    if isinstance(error, Unavailable) or (error is not None and is_outage(error)):
        return {"code": "UNAVAILABLE"}
    if isinstance(error, NotFound):
        return {"code": "NOT_FOUND"}
    if isinstance(error, Forbidden):
        return {"code": "FORBIDDEN", "permission": error.permission.value}
    if isinstance(error, Unauthenticated):
        return {"code": "UNAUTHENTICATED"}
    return None
