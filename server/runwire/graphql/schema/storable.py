"""Every string argument a client sends is text both databases can store, or the field refuses.

Postgres refuses a NUL character and a lone surrogate where SQLite keeps them, and its driver's
error reached clients as "Internal error". One check at the edge, over every argument of every
root field (input objects, lists and JSON values, keys included), gives one ValidationError on
both databases, naming the field as the domain does (`labels[3]`, `inputs.name`, `reason`).
"""

from __future__ import annotations

from typing import Any

from strawberry.extensions import FieldExtension
from strawberry.extensions.field_extension import AsyncExtensionResolver, SyncExtensionResolver
from strawberry.types.base import get_object_definition, has_object_definition
from strawberry.utils.str_converters import to_camel_case

from runwire.errors import FieldError, Invalid
from runwire.graphql.schema.context import Info
from runwire.graphql.schema.errors import to_error
from runwire.scenarios.limits import join, unstorable_errors


class StorableArguments(FieldExtension):
    """Refuses a query or subscription whose arguments hold an unstorable string.

    It raises while the arguments are converted, before the resolver runs (a subscription's
    resolver is a generator, which a resolve wrapper cannot await); the error reaches the
    client with its message.
    """

    def map_arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if errors := argument_errors(kwargs):
            raise Invalid(errors)
        return kwargs


class StorableMutationArguments(FieldExtension):
    """Answers a mutation whose arguments hold an unstorable string with its ValidationError."""

    def resolve(self, next_: SyncExtensionResolver, source: Any, info: Info, **kwargs: Any) -> Any:
        if errors := argument_errors(kwargs):
            return to_error(Invalid(errors))
        return next_(source, info, **kwargs)

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: Info, **kwargs: Any
    ) -> Any:
        if errors := argument_errors(kwargs):
            return to_error(Invalid(errors))
        return await next_(source, info, **kwargs)


def check_every_argument(root_type: type, *, mutation: bool = False) -> None:
    """Put the check on every field of a root type, inherited ones too."""
    for field in get_object_definition(root_type, strict=True).fields:
        check = StorableMutationArguments() if mutation else StorableArguments()
        field.extensions.append(check)


def argument_errors(arguments: dict[str, Any]) -> list[FieldError]:
    """Unstorable strings among a resolver's arguments, by the path the domain would name."""
    errors: list[FieldError] = []
    for name, value in arguments.items():
        # The fields of the one `input` argument are named on their own, as the domain does.
        _check(value, "" if name == "input" else to_camel_case(name), errors)
    return errors


def _check(value: Any, path: str, errors: list[FieldError]) -> None:
    if isinstance(value, str | dict):
        errors.extend(unstorable_errors(value, path))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", errors)
    elif has_object_definition(value):  # an input object
        for field in get_object_definition(value, strict=True).fields:
            _check(
                getattr(value, field.python_name),
                join(path, field.graphql_name or to_camel_case(field.python_name)),
                errors,
            )
