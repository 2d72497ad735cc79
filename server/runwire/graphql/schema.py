"""The schema: types, operations, and masking of unexpected errors."""

from __future__ import annotations

from graphql import GraphQLError
from strawberry import Schema
from strawberry.extensions import MaskErrors

from runwire.domain.errors import RunwireError
from runwire.graphql.mutations import Mutation
from runwire.graphql.queries import Query
from runwire.graphql.subscriptions import Subscription
from runwire.graphql.types import EVENT_TYPES


def _should_mask(error: GraphQLError) -> bool:
    """Expected domain errors (and GraphQL validation) keep their message; the rest is masked."""
    original = error.original_error
    return original is not None and not isinstance(original, RunwireError)


def build_schema() -> Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=list(EVENT_TYPES),
        extensions=[
            lambda: MaskErrors(should_mask_error=_should_mask, error_message="Internal error")
        ],
    )
