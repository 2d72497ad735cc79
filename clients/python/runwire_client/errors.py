"""The client's exception tree, and its translation from what the server answered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class RunwireError(Exception):
    """Runwire could not do what was asked."""

    error_type = "RunwireError"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        """What went wrong, in the server's words where it said."""
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field, named by its path (`steps[0].with.argv`, `inputs.count`)."""

    path: str
    message: str


class ValidationError(RunwireError):
    """The request is invalid."""

    error_type = "ValidationError"

    def __init__(self, message: str, field_errors: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.field_errors = tuple(field_errors)


class NotFoundError(RunwireError):
    """No such object in this workspace."""

    error_type = "NotFoundError"


class InvalidTransitionError(RunwireError):
    """The execution, or the named step, is in a state that forbids this."""

    error_type = "InvalidTransitionError"

    def __init__(
        self,
        message: str,
        current_status: str,
        step_key: str | None = None,
        step_status: str | None = None,
    ) -> None:
        super().__init__(message)
        self.current_status = current_status
        self.step_key = step_key
        self.step_status = step_status


class SuiteMismatchError(RunwireError):
    """The two suite runs are of different suites: nothing to compare."""

    error_type = "SuiteMismatchError"

    def __init__(self, message: str, base_suite: str, head_suite: str) -> None:
        super().__init__(message)
        self.base_suite = base_suite
        self.head_suite = head_suite


class PermissionDeniedError(RunwireError):
    """The token's role does not grant the permission this needs."""

    error_type = "PermissionDeniedError"

    def __init__(self, message: str, permission: str, role: str | None = None) -> None:
        super().__init__(message)
        self.permission = permission
        self.role = role


class AuthenticationError(RunwireError):
    """The server refused the token (missing, unknown, expired or revoked)."""

    error_type = "Unauthenticated"


class QueryError(RunwireError):
    """The server reported an error for the request."""

    error_type = "GraphQLError"

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors = tuple(errors)


class ConnectionFailedError(RunwireError):
    """The server could not be reached."""

    error_type = "ConnectionError"


class UnexpectedResponseError(RunwireError):
    """The server answered something this version of the client cannot read."""

    error_type = "UnexpectedResponse"


def from_result(payload: Mapping[str, Any]) -> RunwireError:
    """The exception for an error member of a result union (`... on Error`)."""
    typename = payload.get("__typename")
    message = str(payload.get("message") or typename)
    if typename == "ValidationError":
        fields = [
            FieldError(path=str(item["path"]), message=str(item["message"]))
            for item in payload.get("fieldErrors") or ()
        ]
        return ValidationError(message, fields)
    if typename == "NotFoundError":
        return NotFoundError(message)
    if typename == "InvalidTransitionError":
        return InvalidTransitionError(
            message,
            current_status=str(payload.get("currentStatus")),
            step_key=payload.get("stepKey"),
            step_status=payload.get("stepStatus"),
        )
    if typename == "PermissionDeniedError":
        return PermissionDeniedError(
            message, permission=str(payload.get("permission")), role=payload.get("role")
        )
    if typename == "SuiteMismatchError":
        return SuiteMismatchError(
            message, str(payload.get("baseSuite")), str(payload.get("headSuite"))
        )
    return UnexpectedResponseError(f"unknown result type {typename!r}: {message}")


def from_graphql_errors(errors: Sequence[Mapping[str, Any]]) -> RunwireError:
    """The exception for a response's top-level `errors` (denials carry extensions.code)."""
    first = errors[0] if errors else {}
    extensions = first.get("extensions") or {}
    message = "; ".join(str(error.get("message")) for error in errors) or "request failed"
    code = extensions.get("code") if isinstance(extensions, Mapping) else None
    if code == "UNAUTHENTICATED":
        return AuthenticationError(str(first.get("message")))
    if code == "FORBIDDEN":
        return PermissionDeniedError(
            str(first.get("message")), permission=str(extensions.get("permission"))
        )
    return QueryError(message, errors)
