"""Memoised completions: a live batch's selection completed and encoded once per document.

graphql-core executes a subscription's selection set for every subscriber and every event, and
Strawberry then serializes each result to JSON for each socket. With 100 subscribers of one
execution that is 100 identical completions and 100 identical `json.dumps` per batch; profiled
(benchmark P2), it was most of the server's time. Here a batch's completed selection is memoised
on the batch object, which the hub hands to every follower of that execution, keyed by the
document's field node; the WebSocket encoder then reuses its JSON text and adds only the
operation id.

Even with the completion shared, Strawberry's per-result pipeline (graphql-core's per-event
execution, the extension hooks, the result's masking) stayed the larger part of each delivery.
So a subscriber whose batch was already completed for its document by another subscriber skips
it: `sockets.send_shared` puts the memoised message straight on its operation's socket, in
order, and only the first subscriber of each batch goes through GraphQL execution.

Sharing is sound only where the completed value depends on nothing but the source object and the
document: so only for `SharedSource` values (whose types resolve plain attributes, never the
context or the viewer), only for selections that use no variables, and only when completing
raised no error (errors carry per-request paths).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from graphql import FieldNode, GraphQLOutputType, GraphQLResolveInfo, is_non_null_type
from graphql.pyutils import Path

from runwire.graphql.fanout.compat.graphql_core import FieldDetailsList, error_count, field_node
from runwire.graphql.fanout.plain_lists import PlainListExecutor

_encode = msgspec.json.Encoder().encode


def encode_message(message: object) -> str:
    """A GraphQL response or socket message as JSON text, by msgspec where it can.

    A live batch's `next` message reuses the JSON its SharedCompletion encoded once for all its
    sockets. Anything else (an HTTP answer: a history page is ~15 KB) is encoded by msgspec,
    several times faster than the json module Strawberry uses; what msgspec refuses (a lone
    surrogate in a text, say) is written by json as before.
    """
    shared = encode_next_message(message)
    if shared is not None:
        return shared
    try:
        return _encode(message).decode()
    except (TypeError, UnicodeEncodeError, msgspec.EncodeError):
        return json.dumps(message, separators=(",", ":"))


class SharedSource:
    """A value handed to many subscribers at once; its completed selections are memoised."""

    # Not a dataclass field: Strawberry types subclass this, and the memo is no field of theirs.
    @property
    def completions(self) -> dict[int, tuple[FieldNode, SharedCompletion]]:
        memo: dict[int, tuple[FieldNode, SharedCompletion]] | None = self.__dict__.get(
            "_completions"
        )
        if memo is None:
            memo = self.__dict__["_completions"] = {}
        return memo

    def completion(self, node: FieldNode) -> SharedCompletion | None:
        """Its completion memoised for the document field `node`, if there is one."""
        memo = self.completions.get(id(node))
        return memo[1] if memo is not None and memo[0] is node else None


class SharedCompletion(dict[str, Any]):
    """A completed selection shared by every subscriber that asked for it; never mutated."""

    __slots__ = ("_json",)

    def __init__(self, completed: dict[str, Any]) -> None:
        super().__init__(completed)
        self._json: str | None = None

    def json(self) -> str:
        """Its JSON text, encoded once, by msgspec: far faster than json on an event batch."""
        if self._json is None:
            try:
                self._json = _encode(self).decode()
            except (UnicodeEncodeError, msgspec.EncodeError):
                # A lone surrogate in a text, say: the json module writes it as an escape.
                self._json = json.dumps(self, separators=(",", ":"))
        return self._json

    def next_message(self, operation_id: str, response_key: str) -> str:
        """The graphql-transport-ws `next` message carrying it as the data of `response_key`."""
        return next_message_head(operation_id, response_key) + self.json() + NEXT_MESSAGE_TAIL


def next_message_head(operation_id: str, response_key: str) -> str:
    """A `next` message up to its data's value; the value's JSON and NEXT_MESSAGE_TAIL follow."""
    return (
        f'{{"id":{json.dumps(operation_id)},"type":"next","payload":{{"data":'
        f"{{{json.dumps(response_key)}:"
    )


NEXT_MESSAGE_TAIL = "}}}"


class SharingExecutor(PlainListExecutor):
    """Strawberry's executor, reusing a SharedSource's completion of the same field node."""

    def complete_value(
        self,
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        if (
            not isinstance(result, SharedSource)
            or is_non_null_type(return_type)  # completed again for the inner type: share there
            or len(field_details_list) != 1
        ):
            return super().complete_value(
                return_type, field_details_list, info, path, result, position_context
            )
        node = field_node(field_details_list)
        shared = result.completion(node)
        if shared is not None:
            return shared
        errors_before = error_count(self)
        completed = super().complete_value(
            return_type, field_details_list, info, path, result, position_context
        )
        if (
            type(completed) is dict
            and error_count(self) == errors_before
            and self._is_constant(node)
        ):
            completed = SharedCompletion(completed)
            result.completions[id(node)] = (node, completed)
        return completed


def encode_next_message(message: object) -> str | None:
    """A graphql-transport-ws `next` message carrying a SharedCompletion, as JSON; else None."""
    if not isinstance(message, dict) or message.get("type") != "next" or len(message) != 3:
        return None
    payload = message.get("payload")
    if not isinstance(payload, dict) or len(payload) != 1:
        return None
    data = payload.get("data")
    if not isinstance(data, dict) or len(data) != 1:
        return None
    ((response_key, value),) = data.items()
    if not isinstance(value, SharedCompletion):
        return None
    operation_id = message["id"]
    if not isinstance(operation_id, str) or not isinstance(response_key, str):
        return None
    return value.next_message(operation_id, response_key)
