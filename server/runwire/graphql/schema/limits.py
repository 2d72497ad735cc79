"""Depth and alias limits, measured in time linear in the document, whatever its fragments."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)
from strawberry.extensions import AddValidationRules

from runwire.graphql.fanout.compat.graphql_core import set_field_comparison_budget

# Strawberry's QueryDepthLimiter and MaxAliasesLimiter walk every fragment spread anew, so
# fragments that each spread the next one twice cost 2^n steps: 30 of them (about 1 KB)
# blocked the event loop for hours. Here each fragment is measured once and reused. They also
# raised (KeyError, ValueError) on unknown fragments and empty selection sets, which reached
# clients as bare exception messages; those documents are left to graphql-core's own rules.


@dataclass(frozen=True, slots=True)
class _Shape:
    # Nested selections with a selection set of their own, on the deepest path; introspection
    # fields do not count (graphql-core bounds their nesting with its own rule).
    depth: int = 0
    # Aliased fields, each fragment counted as often as it is spread; saturates at the limit
    # + 1, so a document that multiplies aliases through fragments cannot make huge numbers.
    aliases: int = 0


_EMPTY = _Shape()


def bound_field_comparisons(budget: int) -> None:
    """Cap graphql-core's work on comparing fields that share a name, for this process."""
    # Comparing every pair of same-named fields is quadratic: 1200 copies of `viewer { label }`
    # (within the token limit) used up graphql-core's default budget of 500,000 units only after
    # seconds of blocked event loop. Real operations spend a few units (GraphiQL's introspection
    # none), so a tenth of the default leaves ample room and stops a flood ten times sooner.
    # graphql-core documents this module attribute as the knob; it is read at each validation.
    set_field_comparison_budget(budget)


class DocumentShapeLimiter(AddValidationRules):
    """Refuse documents nested deeper than `max_depth` or with more than `max_aliases`."""

    def __init__(self, max_depth: int, max_aliases: int) -> None:
        super().__init__([_shape_rule(max_depth, max_aliases)])


# One rule class per pair of limits: the validation cache keys on the rules, so a class made
# afresh per request would never hit it.
@functools.cache
def _shape_rule(max_depth: int, max_aliases: int) -> type[ValidationRule]:
    class DocumentShapeRule(ValidationRule):
        # On entering the document, not in __init__: graphql-core turns an abort or a
        # RecursionError during the visit into a validation error, but not one from __init__.
        def enter_document(self, node: DocumentNode, *_: object) -> None:
            fragments = {
                d.name.value: d for d in node.definitions if isinstance(d, FragmentDefinitionNode)
            }
            measure = _Measure(fragments, max_aliases + 1)
            aliases = 0
            deepest: tuple[int, OperationDefinitionNode] | None = None
            for definition in node.definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                shape = measure.selections(definition.selection_set)
                aliases = min(aliases + shape.aliases, max_aliases + 1)
                if deepest is None or shape.depth > deepest[0]:
                    deepest = (shape.depth, definition)
            # One error per limit, however many operations break it.
            if deepest is not None and deepest[0] > max_depth:
                depth, operation = deepest
                name = operation.name.value if operation.name else "anonymous"
                self.report_error(
                    GraphQLError(
                        f"'{name}' is nested {depth} deep; the maximum operation depth is"
                        f" {max_depth}",
                        operation,
                    )
                )
            if aliases > max_aliases:
                self.report_error(
                    GraphQLError(
                        f"more than {max_aliases} aliases in the document (a fragment's aliases"
                        f" count each time it is spread); at most {max_aliases} are allowed"
                    )
                )

    return DocumentShapeRule


class _Measure:
    """Shapes of selection sets, with each fragment measured once."""

    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode], alias_cap: int) -> None:
        self._fragments = fragments
        self._alias_cap = alias_cap
        self._shapes: dict[str, _Shape] = {}
        self._measure_fragments()

    def selections(self, selection_set: SelectionSetNode | None) -> _Shape:
        """The shape of one selection set, its fragment spreads included."""
        if selection_set is None:
            return _EMPTY
        depth = aliases = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.alias is not None:
                    aliases += 1
                inner = self.selections(selection.selection_set)
                counts = (
                    selection.selection_set is not None
                    and not selection.name.value.startswith("__")
                )
                depth = max(depth, inner.depth + 1 if counts else 0)
            elif isinstance(selection, InlineFragmentNode):
                inner = self.selections(selection.selection_set)
                depth = max(depth, inner.depth)
            elif isinstance(selection, FragmentSpreadNode):
                # Unknown fragments and cycles are graphql-core's errors to report; here they
                # only must not raise or recurse.
                inner = self._shapes.get(selection.name.value, _EMPTY)
                depth = max(depth, inner.depth)
            else:  # pragma: no cover - the three kinds of selection are all there are
                continue
            aliases = min(aliases + inner.aliases, self._alias_cap)
        return _Shape(depth, aliases)

    def _measure_fragments(self) -> None:
        """Measure every fragment after the fragments it spreads (iteratively: chains are long)."""
        on_path: set[str] = set()
        for root in self._fragments:
            if root in self._shapes:
                continue
            stack = [(root, self._spreads(root))]
            on_path.add(root)
            while stack:
                name, pending = stack[-1]
                for spread in pending:
                    known = spread in self._fragments
                    if known and spread not in self._shapes and spread not in on_path:
                        on_path.add(spread)
                        stack.append((spread, self._spreads(spread)))
                        break
                else:
                    stack.pop()
                    on_path.discard(name)
                    self._shapes[name] = self.selections(self._fragments[name].selection_set)

    def _spreads(self, fragment: str) -> Iterator[str]:
        """Names of the fragments spread anywhere inside `fragment`."""
        pending = [self._fragments[fragment].selection_set]
        while pending:
            selection_set = pending.pop()
            for selection in selection_set.selections:
                if isinstance(selection, FragmentSpreadNode):
                    yield selection.name.value
                elif (
                    isinstance(selection, (FieldNode, InlineFragmentNode))
                    and selection.selection_set is not None
                ):
                    pending.append(selection.selection_set)
