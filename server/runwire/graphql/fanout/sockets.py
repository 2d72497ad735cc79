"""A subscription's own socket, and sending a memoised message on it around Strawberry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import FieldNode, GraphQLError
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect
from strawberry import Info
from strawberry.http.exceptions import WebSocketDisconnected

from runwire.graphql.fanout.compat.strawberry import (
    Operation,
    OperationTrackingTransportWSHandler,
    current_operation,
    litestar_socket,
    operation_id,
    operation_is_open,
    resolve_info,
    send_operation_errors,
)
from runwire.graphql.fanout.sharing import SharedSource

# What an operation without a usable document is told: the words `/graphql` answers over HTTP.
NO_QUERY_MESSAGE = "No GraphQL query found in the request"
QUERY_NOT_TEXT_MESSAGE = "The GraphQL operation's `query` must be a string or null, if provided."


class SharingTransportWSHandler(OperationTrackingTransportWSHandler):
    """The graphql-transport-ws handler of `/graphql`: subscriptions can find their socket."""

    async def run_operation(self, operation: Operation) -> None:
        # Strawberry would raise on either, log a traceback, and send a masked error or none.
        if not operation.query:
            await send_operation_errors(operation, [GraphQLError(NO_QUERY_MESSAGE)])
            return
        if not isinstance(operation.query, str):
            await send_operation_errors(operation, [GraphQLError(QUERY_NOT_TEXT_MESSAGE)])
            return
        await super().run_operation(operation)


@dataclass(frozen=True, slots=True)
class SubscriptionSocket:
    """Where one subscription's messages go, to send them around Strawberry's execution."""

    operation: Operation
    operation_id: str
    websocket: WebSocket[Any, Any, Any]
    node: FieldNode
    """The document's field node: the key its memoised completions are found under."""
    response_key: str


def subscription_socket(info: Info[Any, Any]) -> SubscriptionSocket | None:
    """The socket of the subscription `info` resolves the root field of; None if unknown."""
    operation = current_operation()
    if operation is None:
        return None  # not run by SharingTransportWSHandler: it executes as usual
    raw = resolve_info(info)
    if raw.path.prev is not None or len(raw.field_nodes) != 1:
        return None
    websocket = litestar_socket(operation)
    if websocket is None:
        return None  # the app serves sockets through Litestar only; anything else executes
    return SubscriptionSocket(
        operation, operation_id(operation), websocket, raw.field_nodes[0], str(raw.path.key)
    )


async def send_shared(socket: SubscriptionSocket | None, source: SharedSource) -> bool:
    """Send `source` as completed for this subscription's document by another subscriber.

    False (nothing sent) unless it was: then the caller yields it for ordinary execution. The
    message is the one execution would produce: memoised completions are error-free, and the
    schema's extensions add nothing to an error-free result. It is sent from inside the
    subscription's source stream, so it goes out after the message before it and before the
    next one, as if yielded.
    """
    if socket is None:
        return False
    shared = source.completion(socket.node)
    if shared is None:
        return False
    # What Strawberry's send_next does, minus its layers (dict, checks, encoder): nothing after
    # the operation completed, and a disconnect as Strawberry's own exception.
    if not operation_is_open(socket.operation):
        return True
    try:
        await socket.websocket.send_data(
            shared.next_message(socket.operation_id, socket.response_key)
        )
    except WebSocketDisconnect as exc:
        raise WebSocketDisconnected from exc
    return True
