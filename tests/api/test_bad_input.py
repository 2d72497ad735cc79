"""Bad input gets a typed error with a precise message; no stack trace reaches a client."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from tests.support.graphql import START, definition, execute, ws_transport
from tests.support.server import Server


async def _start(server: Server, **input: Any) -> dict[str, Any]:
    return dict((await execute(server, START, {"input": input}))["startExecution"])


async def test_malformed_definition_names_each_bad_field(server: Server) -> None:
    text = definition(
        '{key: a, kind: shell, with: {argv: "echo hi"}}',
        "{key: b, kind: teleport}",
        "{key: a, kind: sleep, with: {seconds: 1}}",
    )
    result = await _start(server, definition=text)
    assert result["__typename"] == "ValidationError"
    paths = {error["path"]: error["message"] for error in result["fieldErrors"]}
    assert "expected a list of strings" in paths["steps[0].with.argv"]
    assert "unknown" in paths["steps[1].kind"]
    assert "shell" in paths["steps[1].kind"]
    assert "steps[2].key" in paths


async def test_a_misspelt_template_name_is_refused_at_start_and_at_save(server: Server) -> None:
    text = definition(
        '{key: greet, kind: shell, with: {argv: ["echo", "hi", "{{ inputs.nme }}"]}}',
        name="typo",
        extra="inputs: {name: {type: string}, count: {type: integer, default: 1}}",
    )
    expected = [
        {"path": "steps[0].with.argv[2]", "message": "unknown input 'nme' (inputs: name, count)"}
    ]
    result = await _start(server, definition=text, inputs={"name": "Ada"})
    assert result["__typename"] == "ValidationError"
    assert result["fieldErrors"] == expected
    saved = (
        await execute(
            server,
            "mutation($d: String!) { createScenario(definition: $d) { __typename"
            " ... on ValidationError { fieldErrors { path message } } } }",
            {"d": text},
        )
    )["createScenario"]
    assert saved == {"__typename": "ValidationError", "fieldErrors": expected}


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("name: x\nsteps: [", ""),
        ("[1, 2]", ""),
        ("name: x\nsteps: []", "steps"),
        ("name: x\ntimeout: -1\nsteps: [{key: a, kind: sleep, with: {seconds: 1}}]", "timeout"),
    ],
)
async def test_unparseable_or_structurally_wrong_definitions(
    server: Server, text: str, path: str
) -> None:
    result = await _start(server, definition=text)
    assert result["__typename"] == "ValidationError"
    assert path in {error["path"] for error in result["fieldErrors"]}


async def test_unknown_scenario_is_not_found(server: Server) -> None:
    result = await _start(server, scenario="does-not-exist")
    assert result == {
        "__typename": "NotFoundError",
        "message": "scenario does-not-exist not found",
    }


async def test_inputs_of_the_wrong_type_are_named(server: Server) -> None:
    result = await _start(server, scenario="countdown", inputs={"count": "three", "bogus": 1})
    assert result["__typename"] == "ValidationError"
    paths = {error["path"] for error in result["fieldErrors"]}
    assert {"inputs.count", "inputs.bogus"} <= paths


async def test_scenario_and_definition_together_is_invalid(server: Server) -> None:
    result = await _start(server, scenario="hello", definition="name: x")
    assert result["__typename"] == "ValidationError"
    assert result["fieldErrors"][0]["path"] == "input"


async def test_unknown_execution_id_is_null(server: Server) -> None:
    found = await execute(server, "query($id: ID!) { execution(id: $id) { id } }", {"id": "x"})
    assert found == {"execution": None}


async def test_bad_cursor_is_a_clear_error(server: Server) -> None:
    with pytest.raises(TransportQueryError, match="after: not a cursor"):
        await execute(server, '{ executions(after: "garbage!") { edges { cursor } } }')


async def test_subscription_to_unknown_execution_is_a_clear_error(server: Server) -> None:
    query = 'subscription { executionEvents(executionId: "nope") { lastSeq } }'
    async with Client(transport=ws_transport(server)) as session:
        with pytest.raises(TransportQueryError, match="execution nope not found"):
            async for _ in session.subscribe(GraphQLRequest(query)):
                pass


async def test_graphql_level_faults_carry_no_stack_trace(server: Server) -> None:
    async with httpx.AsyncClient() as client:
        for body in (
            {"query": "{ nope }"},
            {"query": 'mutation { startExecution(input: {priority: "high"}) { __typename } }'},
            {"query": "{"},
        ):
            response = await client.post(f"{server.url}/graphql", json=body, headers=server.headers)
            assert response.status_code in {200, 400}
            assert response.json()["errors"]
            assert "Traceback" not in response.text
            assert 'File "' not in response.text


async def test_scenarios_can_be_created_and_versioned(server: Server) -> None:
    mutation = """
    mutation($d: String!) { %s(definition: $d) {
      __typename ... on ScenarioSuccess { scenario { name version inputs { name type } } }
      ... on Error { message } } }
    """
    first = definition("{key: a, kind: sleep, with: {seconds: 0}}", name=f"made-{server.url[-5:]}")
    created = (await execute(server, mutation % "createScenario", {"d": first}))["createScenario"]
    assert created["scenario"]["version"] == 1
    again = (await execute(server, mutation % "createScenario", {"d": first}))["createScenario"]
    assert again["__typename"] == "ValidationError"
    second = first.replace("seconds: 0", "seconds: 0.01")
    updated = (await execute(server, mutation % "updateScenario", {"d": second}))["updateScenario"]
    assert updated["scenario"]["version"] == 2
    missing = (
        await execute(
            server,
            mutation % "updateScenario",
            {"d": "name: ghost\nsteps: [{key: a, kind: sleep, with: {seconds: 0}}]"},
        )
    )["updateScenario"]
    assert missing["__typename"] == "NotFoundError"


async def test_inputs_that_are_not_an_object_are_named(server: Server) -> None:
    result = await _start(server, scenario="hello", inputs=[1, 2])
    assert result["__typename"] == "ValidationError"
    assert result["fieldErrors"] == [{"path": "inputs", "message": "expected a JSON object"}]
