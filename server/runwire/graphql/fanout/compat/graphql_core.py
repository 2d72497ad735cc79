"""What Runwire assumes of graphql-core 3.3's internals (tests/contract/test_graphql_core.py).

- `Executor.complete_value(return_type, field_details_list, info, path, result,
  position_context)` completes every value of the operation, the subscription's root field and
  each list included, and the `execution_context_class` a schema is given may override it (the
  executors in plain_lists.py and sharing.py do, with this signature).
- A `FieldDetailsList` is a list of field details whose `node` is the document's `FieldNode`.
- `Executor.collect_subfields(object_type, field_details_list)` collects the fields graphql-core
  itself would complete for an object (`grouped_field_set`, fragments and @skip/@include
  applied) and the @defer usages among them (`new_defer_usages`).
- `Executor.collected_errors.errors` grows by each field error as completion raises it.
- `Executor.fragment_definitions` maps the document's fragments; `Executor.middleware_manager`
  holds the middleware, if any.
- `overlapping_fields_can_be_merged.MAX_COMPLEXITY_BUDGET`, a module attribute, is the budget of
  the rule comparing same-named fields, read as each validation starts.

These are read once per completed list or memoised selection, never once per delivery.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import graphql.validation.rules.overlapping_fields_can_be_merged as overlapping_fields
from graphql import FieldNode, FragmentDefinitionNode, GraphQLObjectType
from graphql.execution import Executor
from graphql.execution.collect_fields import FieldDetailsList

__all__ = [
    "FieldDetailsList",
    "collect_subfields",
    "document_fragments",
    "error_count",
    "field_node",
    "has_middleware",
    "set_field_comparison_budget",
]


def field_node(field_details_list: FieldDetailsList) -> FieldNode:
    """The document's node of the (first) field these details are about."""
    return field_details_list[0].node


def collect_subfields(
    executor: Executor[Any], object_type: GraphQLObjectType, field_details_list: FieldDetailsList
) -> tuple[Mapping[str, FieldDetailsList], bool]:
    """The fields graphql-core completes for `object_type` by response key; True if any defers."""
    collected = executor.collect_subfields(object_type, field_details_list)
    return collected.grouped_field_set, bool(collected.new_defer_usages)


def error_count(executor: Executor[Any]) -> int:
    """How many field errors the execution has collected so far."""
    return len(executor.collected_errors.errors)


def document_fragments(executor: Executor[Any]) -> Iterable[FragmentDefinitionNode]:
    """The fragments the executed document defines."""
    return executor.fragment_definitions.values()


def has_middleware(executor: Executor[Any]) -> bool:
    """Whether the execution runs middleware around resolvers."""
    manager = executor.middleware_manager
    return bool(manager and manager.middlewares)


def set_field_comparison_budget(budget: int) -> None:
    """Cap graphql-core's work comparing same-named fields, for every validation after this."""
    overlapping_fields.MAX_COMPLEXITY_BUDGET = budget
