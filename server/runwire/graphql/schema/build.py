"""The schema: types, operations, and the guards every document passes through."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError
from strawberry import Schema
from strawberry.extensions import (
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.types import ExecutionContext, ExecutionResult

from runwire.errors import RunwireError, Unavailable
from runwire.faults import is_outage
from runwire.graphql.fanout.compat.strawberry import MaskErrorsOfFailedResults
from runwire.graphql.fanout.sharing import SharingExecutor
from runwire.graphql.schema.errors import error_extensions
from runwire.graphql.schema.limits import DocumentShapeLimiter, bound_field_comparisons
from runwire.graphql.schema.mutations import Mutation
from runwire.graphql.schema.queries import Query
from runwire.graphql.schema.subscriptions import Subscription
from runwire.graphql.schema.types import EVENT_TYPES


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """What one GraphQL document may ask for; checked before anything executes."""

    max_depth: int = 15
    max_aliases: int = 30
    # Lexical tokens: bounds parsing work, so a huge document is refused before it is parsed.
    max_tokens: int = 5000
    # graphql-core's budget for comparing same-named fields (see `bound_field_comparisons`).
    field_comparison_budget: int = 50_000
    introspection: bool = True


logger = logging.getLogger(__name__)

MASKED_MESSAGE = "Internal error"
DOCUMENT_CACHE_SIZE = 256


UNAVAILABLE_MESSAGE = Unavailable().message


def _should_mask(error: GraphQLError) -> bool:
    """Domain errors and errors about the request (syntax, validation, variables) keep theirs."""
    original = error.original_error
    if original is None or isinstance(original, RunwireError) or is_outage(original):
        return False  # an outage says so itself (see _Schema.process_errors), without details
    # A bad variable value arrives wrapping graphql-core's or Strawberry's GraphQLError, before
    # any field runs (no path): the client's mistake, which "Internal error" would hide. With a
    # path it is the server's (a resolver's value its type cannot represent) and is masked.
    return not (isinstance(original, GraphQLError) and error.path is None)


def _masked(error: GraphQLError) -> GraphQLError:
    return GraphQLError(
        MASKED_MESSAGE,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
    )


class _Schema(Schema):
    """Codes domain errors, logs unexpected ones, and masks what MaskErrors cannot see (parsing
    or validation crashes)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Every result with errors passes here, before masking, whichever the operation type
        # and transport: the one place a domain error gets its `extensions.code`.
        unexpected = []
        for error in errors:
            if not error.extensions:
                extensions = error_extensions(error.original_error)
                if extensions is not None:
                    error.extensions = extensions
            if error.original_error is not None and is_outage(error.original_error):
                # The driver's words stay in the server; health.py logs the outage, once.
                error.message = UNAVAILABLE_MESSAGE
            elif _should_mask(error):
                unexpected.append(error)
            else:
                # The client's mistake (syntax, validation, an unknown id, a permission), told
                # to the client: a log line per bad request would only bury the server's own.
                logger.debug("GraphQL error for the client: %s", error.message)
        # Strawberry's own logging: one record each, with the traceback.
        super().process_errors(unexpected, execution_context)

    # Strawberry turns such an exception into an error carrying its bare message (e.g. a
    # KeyError's) after the extensions have run, so the masking extension never sees it.
    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        result = await super().execute(*args, **kwargs)
        if result.errors:
            result.errors = [_masked(e) if _should_mask(e) else e for e in result.errors]
        return result


def build_schema(limits: DocumentLimits | None = None) -> Schema:
    limits = limits or DocumentLimits()
    bound_field_comparisons(limits.field_comparison_budget)
    # Factories, not instances: an extension holds its request's state, so each request gets
    # its own. The limits come first, so a hostile document costs no more than its refusal.
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        lambda: DocumentShapeLimiter(max_depth=limits.max_depth, max_aliases=limits.max_aliases),
        # Clients send the same few documents over and over (1,000 subscribers of one
        # subscription, a dashboard's polling query): parse and validate each text once. The
        # caches are bounded, and a document refused by the limits above is never cached.
        lambda: ParserCache(maxsize=DOCUMENT_CACHE_SIZE),
        lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE),
        lambda: MaskErrorsOfFailedResults(
            should_mask_error=_should_mask, error_message=MASKED_MESSAGE
        ),
    ]
    if not limits.introspection:
        extensions.append(DisableIntrospection)
    return _Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=list(EVENT_TYPES),
        extensions=extensions,
        # Completes a live event batch's selection once for all its subscribers.
        execution_context_class=SharingExecutor,
    )
