"""The plain-list executor: lists of plain objects completed by plan, not field by field.

An event batch's `events` list is most of what a subscription sends: a chunk-heavy execution
makes thousands of events a second, and graphql-core completes each one field by field (resolve
info, resolver, awaitable checks, leaf coercion); that was the largest single cost of persisting
and delivering events (benchmark P1). For a list whose items' selected fields are all plain
attributes (leaves, lists of leaves, or plain objects in turn), this completes each item with a
plan made once per runtime type: the fields graphql-core itself collects (so fragments and
@skip/@include mean what they mean there), each read as an attribute and coerced by its type.

Anything else, or anything that would be an error, goes the ordinary way, so errors and their
paths stay graphql-core's: a field with arguments, a resolver, a Strawberry field extension or
permission, an abstract or repeated object field, @defer, middleware, a null in a non-null
field, a failed coercion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NamedTuple

from graphql import (
    BREAK,
    FieldNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLList,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLString,
    Undefined,
    get_nullable_type,
    is_abstract_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    visit,
)
from graphql.language import Node, VariableNode, Visitor
from graphql.pyutils import Path

from runwire.graphql.fanout.compat.graphql_core import (
    FieldDetailsList,
    collect_subfields,
    document_fragments,
    field_node,
    has_middleware,
)
from runwire.graphql.fanout.compat.strawberry import (
    StrawberryExecutionContext,
    object_type_name,
    plain_attribute,
)

_CACHE_LIMIT = 4096


class _Field(NamedTuple):
    """One selected field: where its value comes from and how it is completed."""

    response_key: str
    attribute: str  # for __typename: the type's name itself
    kind: int  # _TYPENAME, _LEAF, _LEAF_LIST or _OBJECT
    non_null: bool
    coerce: Callable[[Any], Any] | None = None  # a leaf's, or a leaf list's items'
    items_non_null: bool = False
    object_type: GraphQLObjectType | None = None  # an object field's
    details: FieldDetailsList | None = None  # an object field's, for its own plan


_TYPENAME, _LEAF, _LEAF_LIST, _OBJECT = range(4)
_Plan = tuple[_Field, ...]


class _NotPlain(Exception):
    """This value needs graphql-core: a resolver, a null in a non-null field, a bad value..."""


_INT_RANGE = range(-(2**31), 2**31)
_EXACT: dict[GraphQLLeafType, type] = {GraphQLString: str, GraphQLID: str, GraphQLBoolean: bool}


def _coercion(leaf_type: GraphQLLeafType) -> Callable[[Any], Any]:
    """`leaf_type.coerce_output_value`, short-cut for values already in their output form.

    A value of the exact builtin type a standard scalar outputs is returned as it is (what the
    scalar's own coercion returns for it); an enum's coercions are remembered per member.
    """
    coerce = leaf_type.coerce_output_value
    exact = _EXACT.get(leaf_type)
    if exact is not None:
        return lambda value: value if type(value) is exact else coerce(value)
    if leaf_type is GraphQLInt:
        return lambda value: value if type(value) is int and value in _INT_RANGE else coerce(value)
    if isinstance(leaf_type, GraphQLEnumType):
        names: dict[Any, Any] = {}

        def enum_name(value: Any) -> Any:
            try:
                return names[value]
            except (KeyError, TypeError):
                name = coerce(value)
                if len(names) < 256:
                    names[value] = name
                return name

        return enum_name
    if leaf_type.name == "DateTime":
        # Lines read together share one datetime object (one clock read per read): its text is
        # made once for all their events, not once per event.
        last: list[Any] = [None, None]

        def datetime_text(value: Any) -> Any:
            if value is last[0]:
                return last[1]
            text = coerce(value)
            last[0], last[1] = value, text
            return text

        return datetime_text
    return coerce


class PlainListExecutor(StrawberryExecutionContext):
    """Strawberry's executor, completing lists of plain objects item by item with a plan."""

    # Caches keyed by a field node's id() that keep the node, so an id reused after a document
    # is freed never hits: plans for selections without variables, by (node, item class), and
    # whether a node's selection (with the document's fragments) is free of variables.
    _plans: ClassVar[dict[tuple[int, type], tuple[FieldNode, _Plan]]] = {}
    _constant: ClassVar[dict[int, tuple[FieldNode, bool]]] = {}

    def complete_value(
        self,
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        if is_list_type(return_type) and isinstance(result, list) and result:
            completed = self._complete_plain_list(return_type, field_details_list, result)
            if completed is not None:
                return completed
        return super().complete_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _complete_plain_list(
        self, return_type: GraphQLList[Any], field_details_list: FieldDetailsList, items: list[Any]
    ) -> list[dict[str, Any]] | None:
        """The completed list, or None: complete it the ordinary way."""
        if has_middleware(self) or len(field_details_list) != 1:
            return None
        item_type = get_nullable_type(return_type.of_type)
        if not (is_abstract_type(item_type) or is_object_type(item_type)):
            return None
        node = field_node(field_details_list)
        plans: dict[type, _Plan | None] = {}
        completed: list[dict[str, Any]] = []
        try:
            for item in items:
                cls = type(item)
                if cls not in plans:
                    plans[cls] = self._plan(cls, item_type, field_details_list, node)
                plan = plans[cls]
                if plan is None:
                    return None
                completed.append(self._complete_item(item, plan))
        except Exception:
            # _NotPlain, or anything a value raised: graphql-core completes the list again and
            # reports the error with its own message and path.
            return None
        return completed

    def _complete_item(self, item: object, plan: _Plan) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field in plan:
            if field.kind == _TYPENAME:
                values[field.response_key] = field.attribute
                continue
            value = getattr(item, field.attribute)
            if value is None:
                if field.non_null:
                    raise _NotPlain
            elif field.kind == _LEAF:
                value = _coerced(field.coerce, value)
            elif field.kind == _LEAF_LIST:
                if not isinstance(value, list | tuple):
                    raise _NotPlain
                if field.items_non_null and None in value:
                    raise _NotPlain
                value = [None if v is None else _coerced(field.coerce, v) for v in value]
            else:
                assert field.object_type is not None
                assert field.details is not None
                nested = self._plan(
                    type(value), field.object_type, field.details, field_node(field.details)
                )
                if nested is None:
                    raise _NotPlain
                value = self._complete_item(value, nested)
            values[field.response_key] = value
        return values

    def _plan(
        self,
        cls: type,
        item_type: Any,
        field_details_list: FieldDetailsList,
        node: FieldNode,
    ) -> _Plan | None:
        cached = self._plans.get((id(node), cls))
        if cached is not None and cached[0] is node:
            return cached[1]
        plan = self._make_plan(cls, item_type, field_details_list)
        if plan is not None and self._is_constant(node):
            if len(self._plans) >= _CACHE_LIMIT:
                self._plans.clear()
            self._plans[(id(node), cls)] = (node, plan)
        return plan

    def _is_constant(self, node: FieldNode) -> bool:
        """Whether completing `node` depends on the source value and the document alone."""
        known = self._constant.get(id(node))
        if known is not None and known[0] is node:
            return known[1]
        constant = not selection_uses_variables(node, document_fragments(self))
        if len(self._constant) >= _CACHE_LIMIT:
            self._constant.clear()
        self._constant[id(node)] = (node, constant)
        return constant

    def _make_plan(
        self, cls: type, item_type: Any, field_details_list: FieldDetailsList
    ) -> _Plan | None:
        type_name = object_type_name(cls)
        if type_name is None:
            return None
        object_type = self.schema.get_type(type_name)
        if not isinstance(object_type, GraphQLObjectType) or not (
            object_type is item_type or self.schema.is_sub_type(item_type, object_type)
        ):
            return None
        grouped_fields, defers = collect_subfields(self, object_type, field_details_list)
        if defers:
            return None
        fields: list[_Field] = []
        for response_key, details in grouped_fields.items():
            node = field_node(details)
            name = node.name.value
            if name == "__typename":
                fields.append(_Field(response_key, object_type.name, _TYPENAME, True))
                continue
            field_def = object_type.fields.get(name)
            if field_def is None or field_def.args or node.arguments:
                return None
            attribute = plain_attribute(field_def)
            if attribute is None:
                return None
            field_type = get_nullable_type(field_def.type)
            non_null = is_non_null_type(field_def.type)
            if is_leaf_type(field_type):
                fields.append(
                    _Field(response_key, attribute, _LEAF, non_null, _coercion(field_type))
                )
            elif is_list_type(field_type) and is_leaf_type(get_nullable_type(field_type.of_type)):
                element_type = field_type.of_type
                fields.append(
                    _Field(
                        response_key,
                        attribute,
                        _LEAF_LIST,
                        non_null,
                        _coercion(get_nullable_type(element_type)),
                        items_non_null=is_non_null_type(element_type),
                    )
                )
            elif is_object_type(field_type) and len(details) == 1:
                fields.append(
                    _Field(
                        response_key,
                        attribute,
                        _OBJECT,
                        non_null,
                        object_type=field_type,
                        details=details,
                    )
                )
            else:
                return None
        return tuple(fields)


class _FindsVariables(Visitor):
    found = False

    def enter_variable(self, node: VariableNode, *_: object) -> object:
        self.found = True
        return BREAK


def selection_uses_variables(node: FieldNode, fragments: Iterable[Node]) -> bool:
    """Whether a field's selection (or any fragment the document defines) refers to a variable.

    Without one, completing the field depends on the source value and the document alone.
    """
    selections: list[Node] = [] if node.selection_set is None else [node.selection_set]
    for part in (*selections, *fragments):
        finder = _FindsVariables()
        visit(part, finder)
        if finder.found:
            return True
    return False


def _coerced(coerce: Callable[[Any], Any] | None, value: Any) -> Any:
    assert coerce is not None
    coerced = coerce(value)
    if coerced is None or coerced is Undefined:
        raise _NotPlain
    return coerced
