"""The one small exception tree, under every layer; each boundary translates it (GraphQL, HTTP)."""

from __future__ import annotations

from dataclasses import dataclass


class RunwireError(Exception):
    """Runwire could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class NotFound(RunwireError):
    """No such object."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field, named by its path (`steps[2].with.argv`)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class Invalid(RunwireError):
    """The request is invalid."""

    def __init__(self, errors: list[FieldError], message: str | None = None) -> None:
        self.errors = tuple(errors)
        super().__init__(message or "; ".join(str(error) for error in errors) or None)


class InvalidDefinition(Invalid):
    """The definition is invalid."""


class InvalidInputs(Invalid):
    """The inputs do not match the scenario's input signature."""


class InvalidTransition(RunwireError):
    """The execution (or one of its steps) is not in a state that allows this."""

    def __init__(
        self,
        message: str,
        current_status: str,
        step_key: str | None = None,
        step_status: str | None = None,
    ) -> None:
        self.current_status = current_status
        self.step_key = step_key
        self.step_status = step_status
        super().__init__(message)


class LeaseLost(RunwireError):
    """Another runner holds the execution now (or none does): this runner may not write it."""

    def __init__(self, execution_ids: frozenset[str]) -> None:
        self.execution_ids = execution_ids
        super().__init__(
            f"the lease of execution(s) {', '.join(sorted(execution_ids))} is no longer held"
        )


class Unavailable(RunwireError):
    """The service cannot reach its database or bus just now; try again shortly."""
