"""The graphql-transport-ws side of fan-out: a subscription's socket, and sending on it directly."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from graphql import FieldNode
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect
from strawberry import Info
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.litestar.controller import LitestarWebSocketAdapter
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)

from runwire.graphql.fanout.sharing import SharedSource

# The graphql-transport-ws operation whose task is running: set at the top of each operation's
# task, so the subscription resolver (driven inside that task) can reach its socket.
_operation: ContextVar[Operation[Any, Any] | None] = ContextVar("runwire_operation", default=None)


class SharingTransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    """Strawberry's graphql-transport-ws handler, telling resolvers which operation they serve."""

    async def run_operation(self, operation: Operation[Any, Any]) -> None:
        _operation.set(operation)
        await super().run_operation(operation)


@dataclass(frozen=True, slots=True)
class SubscriptionSocket:
    """Where one subscription's messages go, to send them around Strawberry's execution."""

    operation: Operation[Any, Any]
    ws: WebSocket[Any, Any, Any]
    node: FieldNode
    """The document's field node: the key its memoised completions are found under."""
    response_key: str

    def is_open(self) -> bool:
        """False once the operation completed, or its client completed it."""
        operation = self.operation
        return (
            not operation.completed and operation.handler.operations.get(operation.id) is operation
        )


def subscription_socket(info: Info[Any, Any]) -> SubscriptionSocket | None:
    """The socket of the subscription `info` resolves the root field of; None if unknown."""
    operation = _operation.get()
    # The document's own field nodes: Strawberry's Info keeps graphql-core's info as _raw_info.
    raw = info._raw_info
    if operation is None or raw.path.prev is not None or len(raw.field_nodes) != 1:
        return None
    adapter = operation.handler.websocket
    if not isinstance(adapter, LitestarWebSocketAdapter):
        return None  # the app serves sockets through Litestar only; anything else executes
    return SubscriptionSocket(operation, adapter.ws, raw.field_nodes[0], str(raw.path.key))


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
    # What send_next does, minus its layers (dict, checks, encoder: a fifth of each delivery):
    # nothing after the operation completed, and a disconnect as Strawberry's own exception.
    if not socket.is_open():
        return True
    try:
        await socket.ws.send_data(shared.next_message(socket.operation.id, socket.response_key))
    except WebSocketDisconnect as exc:
        raise WebSocketDisconnected from exc
    return True
