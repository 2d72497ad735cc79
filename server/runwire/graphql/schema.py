"""The schema: types, operations, and the guards every document passes through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from graphql import GraphQLError
from strawberry import Schema
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from runwire.domain.errors import RunwireError
from runwire.graphql.auth import AuditMutations, ErrorCodes
from runwire.graphql.mutations import Mutation
from runwire.graphql.queries import Query
from runwire.graphql.subscriptions import Subscription
from runwire.graphql.types import EVENT_TYPES


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """What one GraphQL document may ask for; checked before anything executes."""

    max_depth: int = 15
    max_aliases: int = 30
    # Lexical tokens: bounds parsing work, so a huge document is refused before it is parsed.
    max_tokens: int = 5000
    introspection: bool = True


def _should_mask(error: GraphQLError) -> bool:
    """Expected domain errors (and GraphQL validation) keep their message; the rest is masked."""
    original = error.original_error
    return original is not None and not isinstance(original, RunwireError)


def build_schema(limits: DocumentLimits | None = None) -> Schema:
    limits = limits or DocumentLimits()
    # Factories, not instances: an extension holds its request's state, so each request gets
    # its own. The limits come first, so a hostile document costs no more than its refusal.
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        lambda: QueryDepthLimiter(max_depth=limits.max_depth),
        lambda: MaxAliasesLimiter(max_alias_count=limits.max_aliases),
        ErrorCodes,
        AuditMutations,
        lambda: MaskErrors(should_mask_error=_should_mask, error_message="Internal error"),
    ]
    if not limits.introspection:
        extensions.append(DisableIntrospection)
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=list(EVENT_TYPES),
        extensions=extensions,
    )
