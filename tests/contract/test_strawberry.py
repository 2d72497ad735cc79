"""Strawberry's internals as compat/strawberry.py uses them, on the installed version.

The socket path is checked on the real app served by uvicorn in the test's loop: a broken
assumption there fails no subscription, it only stops subscribers from sharing work.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
import strawberry
from litestar import WebSocket
from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission
from strawberry.types import ExecutionResult
from tests.support.contract import Contract
from tests.support.graphql import acknowledged, definition, gated_step, start
from tests.support.inprocess import Served

from runwire.graphql.fanout.compat.strawberry import (
    MaskErrorsOfFailedResults,
    StrawberryExecutionContext,
    object_type_name,
    operation_is_open,
    plain_attribute,
    resolve_info,
)
from runwire.graphql.fanout.sockets import SubscriptionSocket, subscription_socket
from runwire.graphql.schema import subscriptions

STRAWBERRY = Contract("strawberry-graphql", "strawberry")


@strawberry.type
class Query:
    @strawberry.field
    def probe(self, info: strawberry.Info) -> str:
        seen.append(info)
        return "ok"

    @strawberry.field
    def fails(self) -> str:
        raise RuntimeError("a secret")


seen: list[strawberry.Info] = []


def test_info_keeps_graphql_cores_resolve_info() -> None:
    seen.clear()
    assert strawberry.Schema(query=Query).execute_sync("{ alias: probe }").errors is None
    with STRAWBERRY.holds("Info._raw_info is graphql-core's resolve info (field nodes, path)"):
        raw = resolve_info(seen[0])
        assert [node.name.value for node in raw.field_nodes] == ["probe"]
        assert raw.path.key == "alias"
        assert raw.path.prev is None


def test_executors_extend_the_default_execution_context() -> None:
    with STRAWBERRY.holds(
        "StrawberryGraphQLCoreExecutionContext is the execution context a schema uses by default"
    ):
        assert strawberry.Schema(query=Query).execution_context_class is StrawberryExecutionContext


async def test_masking_passes_every_result_through_process_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    processed: list[object] = []
    process = MaskErrorsOfFailedResults._process_result

    def spy(self: MaskErrorsOfFailedResults, result: object) -> None:
        processed.append(result)
        process(self, result)

    monkeypatch.setattr(MaskErrorsOfFailedResults, "_process_result", spy)

    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def ticks(self) -> AsyncGenerator[int, None]:
            yield 1
            raise RuntimeError("a secret")

    schema = strawberry.Schema(
        query=Query,
        subscription=Subscription,
        extensions=[lambda: MaskErrorsOfFailedResults(error_message="masked")],
    )
    queried = await schema.execute("{ fails }")
    stream = await schema.subscribe("subscription { ticks }")
    assert not isinstance(stream, ExecutionResult), stream
    streamed = [result async for result in stream]
    with STRAWBERRY.holds(
        "MaskErrors._process_result(result) is called with every result, streamed ones"
        " included, and masks its errors"
    ):
        assert [error.message for error in queried.errors or ()] == ["masked"]
        assert [[error.message for error in r.errors or ()] for r in streamed] == [[], ["masked"]]
        assert len(processed) == 3
        assert all(any(result is p for p in processed) for result in streamed)


class Allow(BasePermission):
    message = "never refused"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return True


class Passing(FieldExtension):
    def resolve(self, next_: Any, source: Any, info: strawberry.Info, **kwargs: Any) -> Any:
        return next_(source, info, **kwargs)


@strawberry.type
class Item:
    plain: int
    renamed: str = strawberry.field(name="other")
    guarded: int = strawberry.field(permission_classes=[Allow])
    extended: int = strawberry.field(extensions=[Passing()])

    @strawberry.field
    def computed(self) -> int:
        return 1


def test_a_schema_field_says_whether_reading_it_runs_code() -> None:
    @strawberry.type
    class Items:
        item: Item

    fields = strawberry.Schema(query=Items)._schema.get_type("Item").fields  # type: ignore[union-attr]
    with STRAWBERRY.holds(
        "a type's class carries __strawberry_definition__ (with its name), and each schema field"
        ' its StrawberryField under extensions["strawberry-definition"]'
    ):
        assert object_type_name(Item) == "Item"
        assert object_type_name(int) is None
        assert plain_attribute(fields["plain"]) == "plain"
        assert plain_attribute(fields["other"]) == "renamed"
        for runs_code in ("computed", "guarded", "extended"):
            assert plain_attribute(fields[runs_code]) is None, runs_code


async def test_a_subscription_finds_its_socket_and_sees_it_closed(
    runwire: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    found: list[SubscriptionSocket | Exception | None] = []

    def spy(info: strawberry.Info) -> SubscriptionSocket | None:
        try:
            socket = subscription_socket(info)
        except Exception as error:
            found.append(error)
            raise
        found.append(socket)
        return socket

    monkeypatch.setattr(subscriptions, "subscription_socket", spy)
    gate = tmp_path / "gate"
    execution_id = await start(runwire, definition=definition(gated_step("hold", gate)))
    document = "subscription($id: ID!) { executionEvents(executionId: $id) { lastSeq } }"
    try:
        async with acknowledged(runwire) as ws:
            payload = {"query": document, "variables": {"id": execution_id}}
            await ws.send(json.dumps({"id": "op-1", "type": "subscribe", "payload": payload}))
            assert json.loads(await ws.recv())["type"] == "next"
            with STRAWBERRY.holds(
                "run_operation(operation) runs the operation's resolvers in its task, and the"
                " operation's handler.websocket is Litestar's adapter, its socket `.ws`"
            ):
                (socket,) = found
                if isinstance(socket, Exception):
                    raise socket
                assert socket is not None, "no socket found"
                assert socket.operation_id == "op-1"
                assert isinstance(socket.websocket, WebSocket)
            with STRAWBERRY.holds(
                "an operation is open until its client completes it (operation.completed,"
                " handler.operations)"
            ):
                assert operation_is_open(socket.operation)
                await ws.send(json.dumps({"id": "op-1", "type": "complete"}))
                async with asyncio.timeout(5):
                    while operation_is_open(socket.operation):
                        await asyncio.sleep(0.01)
    finally:
        gate.touch()


def test_the_http_controllers_response_comes_from_a_threaded_dependency() -> None:
    from litestar.di import Provide
    from litestar.response import Response
    from strawberry.litestar import make_graphql_controller

    from runwire.graphql.fanout.compat.strawberry import (
        RESPONSE_DEPENDENCY,
        dependencies_on_the_loop,
    )

    controller = make_graphql_controller(strawberry.Schema(query=Query), path="/graphql")
    with STRAWBERRY.holds("the controller's `response` dependency builds an empty Response"):
        provide = controller.dependencies[RESPONSE_DEPENDENCY]
        assert provide.sync_to_thread
        built = asyncio.run(provide())
        assert isinstance(built, Response)
        assert built.content == {}
    ours = dependencies_on_the_loop(controller.dependencies)[RESPONSE_DEPENDENCY]
    assert isinstance(ours, Provide)
    assert not ours.sync_to_thread
    response = asyncio.run(ours())
    assert isinstance(response, Response)
    assert response.content == {}
    assert response.background is not None
