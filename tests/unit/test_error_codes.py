"""Domain errors raised as GraphQL errors carry the `extensions.code` the schema gives them."""

from __future__ import annotations

from typing import Any

from strawberry.types import ExecutionResult

from runwire.domain.access import Actor, Forbidden, Permission, Role, Unauthenticated
from runwire.errors import Invalid, NotFound
from runwire.graphql.schema.build import build_schema
from runwire.graphql.schema.errors import error_extensions

SCHEMA = build_schema()
VIEWER = Actor(workspace_id="w", label="token:viewer", role=Role.VIEWER)


def test_each_domain_denial_has_its_code() -> None:
    assert error_extensions(NotFound()) == {"code": "NOT_FOUND"}
    assert error_extensions(Unauthenticated()) == {"code": "UNAUTHENTICATED"}
    assert error_extensions(Forbidden(Permission.ADMIN, Role.VIEWER)) == {
        "code": "FORBIDDEN",
        "permission": "admin",
    }
    assert error_extensions(Invalid([])) is None
    assert error_extensions(None) is None


async def test_a_denied_query_answers_forbidden_with_the_permission() -> None:
    result = await SCHEMA.execute("{ apiTokens { id } }", context_value={"actor": VIEWER})
    assert result.errors is not None
    assert [error.formatted["extensions"] for error in result.errors] == [
        {"code": "FORBIDDEN", "permission": "admin"}
    ]


async def test_a_subscription_without_an_actor_answers_unauthenticated() -> None:
    stream = await SCHEMA.subscribe(
        'subscription { executionEvents(executionId: "x") { lastSeq } }',
        context_value={"actor": None},
    )
    assert not isinstance(stream, ExecutionResult)
    results: list[Any] = [result async for result in stream]
    assert [e.formatted["extensions"] for r in results for e in r.errors or ()] == [
        {"code": "UNAUTHENTICATED"}
    ]
