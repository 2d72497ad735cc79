"""What Runwire assumes of Strawberry's internals (tests/contract/test_strawberry.py).

The live socket path is also checked with the others in tests/contract/test_fanout_path.py.

- `Info._raw_info` is graphql-core's resolve info: the document's own field nodes and path.
- `StrawberryGraphQLCoreExecutionContext` (not exported) is the execution context the schema
  uses by default; an `execution_context_class` extends it to keep what it adds.
- `BaseGraphQLTransportWSHandler.run_operation(operation)` is the top of each operation's task,
  and the operation's resolvers and source stream run inside that task. An exception escaping
  the operation's result stream (`ParserCache` parses outside Strawberry's guard, so a syntax
  error escapes) goes to `handle_task_exception(error)` inside that task, which logs it; then
  `complete` is sent unless the operation already sent `complete` or `error` (checked on the
  live path by tests/api/test_first_contact.py).
- `Operation.send_initial_errors(errors)` sends the protocol's `error` message for the operation
  and forgets its id.
- An `Operation` has `id`, `completed` (set once it sent `complete` or `error`) and `handler`,
  whose `operations` maps the ids of the operations still running and whose `websocket` is the
  integration's adapter; Litestar's adapter keeps the Litestar socket as `.ws`.
- `MaskErrors._process_result(result)` is called with every result, streamed ones included,
  and masks its errors.
- A Strawberry type's class carries its definition (with its GraphQL `name`) as
  `__strawberry_definition__`; each graphql-core field of the schema carries its
  `StrawberryField` in its extensions under "strawberry-definition", whose `base_resolver`,
  `extensions` and `permission_classes` are all that can run code when the field is read.

- The HTTP controller `make_graphql_controller` builds takes its per-request `Response` from the
  `response` key of its Litestar `dependencies`: a sync function run in a worker thread
  (`sync_to_thread=True`) that builds `Response({}, background=BackgroundTasks([]))`.

None of this is on the per-delivery path but `operation_is_open`, a plain function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeAlias

from graphql import GraphQLError, GraphQLField, GraphQLResolveInfo
from litestar import WebSocket
from litestar.background_tasks import BackgroundTasks
from litestar.di import Provide
from litestar.response import Response
from strawberry import Info
from strawberry.extensions import MaskErrors
from strawberry.litestar.controller import LitestarWebSocketAdapter
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.subscriptions.protocols.graphql_transport_ws import handlers
from strawberry.types.field import StrawberryField

StrawberryExecutionContext = StrawberryGraphQLCoreExecutionContext
"""Strawberry's default execution context: the base of every `execution_context_class`."""

Operation: TypeAlias = handlers.Operation[Any, Any]
"""One graphql-transport-ws operation (a subscription) on one socket."""


RESPONSE_DEPENDENCY = "response"
"""The key of the controller's dependency giving each request's `Response`."""


async def _response() -> Response[Any]:
    return Response({}, background=BackgroundTasks([]))


def dependencies_on_the_loop(
    dependencies: Mapping[str, Provide | Callable[..., Any]],
) -> dict[str, Provide | Callable[..., Any]]:
    """The controller's dependencies with its per-request `Response` built on the event loop.

    Strawberry's builds it in a worker thread: a thread hop per request (a queue, a future and two
    GIL handovers) to construct an empty object.
    """
    return {**dependencies, RESPONSE_DEPENDENCY: Provide(_response)}


def resolve_info(info: Info[Any, Any]) -> GraphQLResolveInfo[Any]:
    """graphql-core's resolve info behind Strawberry's: the document's field nodes and path."""
    return info._raw_info


def object_type_name(cls: type) -> str | None:
    """The GraphQL name of a Strawberry type's class; None for any other class."""
    definition = getattr(cls, "__strawberry_definition__", None)
    return None if definition is None else str(definition.name)


def plain_attribute(field: GraphQLField) -> str | None:
    """The attribute a schema field reads, if reading it runs nothing (resolver, extension...)."""
    definition = field.extensions.get("strawberry-definition")
    if (
        not isinstance(definition, StrawberryField)
        or definition.base_resolver is not None
        or definition.extensions
        or definition.permission_classes
    ):
        return None
    return definition.python_name


# The operation whose task is running: set at the top of each operation's task, so the
# subscription's resolver (driven inside that task) can find its operation.
_operation: ContextVar[Operation | None] = ContextVar("runwire_operation", default=None)


class OperationTrackingTransportWSHandler(handlers.BaseGraphQLTransportWSHandler[Any, Any]):
    """Strawberry's graphql-transport-ws handler, telling resolvers which operation they serve.

    It also answers with `error` (not a logged traceback and a bare `complete`) an operation
    whose document could not be parsed.
    """

    async def run_operation(self, operation: Operation) -> None:
        _operation.set(operation)
        await super().run_operation(operation)

    async def handle_task_exception(self, error: Exception) -> None:
        operation = current_operation()
        if operation is not None and isinstance(error, GraphQLError):
            # The client's document, refused while parsing: its mistake, not the server's.
            await send_operation_errors(operation, [error])
            return
        await super().handle_task_exception(error)


def current_operation() -> Operation | None:
    """The operation whose task runs this code, when served by the tracking handler."""
    return _operation.get()


def operation_id(operation: Operation) -> str:
    """The id its client gave the operation: every message about it carries it."""
    return operation.id


async def send_operation_errors(operation: Operation, errors: list[GraphQLError]) -> None:
    """End the operation with the protocol's `error` message, carrying `errors`."""
    await operation.send_initial_errors(errors)


def operation_is_open(operation: Operation) -> bool:
    """False once the operation completed, or its client completed it."""
    return not operation.completed and operation.handler.operations.get(operation.id) is operation


def litestar_socket(operation: Operation) -> WebSocket[Any, Any, Any] | None:
    """The Litestar socket the operation's messages go out on; None under another integration."""
    adapter = operation.handler.websocket
    return adapter.ws if isinstance(adapter, LitestarWebSocketAdapter) else None


class MaskErrorsOfFailedResults(MaskErrors):
    """MaskErrors, without its typing-Protocol isinstance check on results that have no errors.

    That check ran for every streamed result of every subscriber, a visible share of fan-out
    time in benchmark P2's profile.
    """

    def _process_result(self, result: object) -> None:
        if getattr(result, "errors", None):
            super()._process_result(result)
