"""The domain's exception tree in GraphQL: result-union error types, and error codes."""

from __future__ import annotations

import strawberry

from runwire.domain.access import Forbidden, Unauthenticated
from runwire.domain.errors import Invalid, InvalidTransition, NotFound, RunwireError


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


def to_error(error: RunwireError) -> ErrorType:
    """Map a domain error to its schema type; anything unexpected re-raises (and is masked)."""
    if isinstance(error, Invalid):
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
    # clients tell apart by `extensions.code`.
    if isinstance(error, NotFound):
        return {"code": "NOT_FOUND"}
    if isinstance(error, Forbidden):
        return {"code": "FORBIDDEN", "permission": error.permission.value}
    if isinstance(error, Unauthenticated):
        return {"code": "UNAUTHENTICATED"}
    return None
