"""Suites over the API: defined by mutation or by file, read back with their cases expanded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from tests.support.server import Server, running_server

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

SUITE_FIELDS = """
  name version description tags createdBy
  cases { name scenario definitionName inputs labels expectedStatus }
"""
CREATE = f"""
mutation($definition: String!) {{
  createSuite(definition: $definition) {{
    __typename
    ... on Error {{ message }}
    ... on ValidationError {{ fieldErrors {{ path message }} }}
    ... on SuiteSuccess {{ suite {{ {SUITE_FIELDS} }} }}
  }}
}}
"""
UPDATE = CREATE.replace("createSuite", "updateSuite")
READ = f"query($name: String!) {{ suite(name: $name) {{ {SUITE_FIELDS} }} }}"

FILE_SUITE = """
name: from-file
tags: [shipped]
cases:
  - {scenario: hello, inputs: {name: file}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("suites")
    suites = directory / "suites"
    suites.mkdir()
    (suites / "from-file.yaml").write_text(FILE_SUITE)
    with running_server("sqlite", directory, {"RUNWIRE_SUITES_DIR": str(suites)}) as found:
        yield found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers, timeout=30) as c:
        yield c


async def graphql(
    client: httpx.AsyncClient, document: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": document, "variables": variables})
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body
    data: dict[str, Any] = body["data"]
    return data


@MODULE_LOOP
async def test_a_suite_file_is_loaded_at_start(client: httpx.AsyncClient) -> None:
    found = (await graphql(client, READ, {"name": "from-file"}))["suite"]

    assert found["version"] == 1
    assert found["tags"] == ["shipped"]
    assert found["createdBy"] == "system"
    assert [case["name"] for case in found["cases"]] == ["hello[name=file]"]
    listed = await graphql(client, '{ suites(tag: "shipped") { name } }')
    assert listed["suites"] == [{"name": "from-file"}]


@MODULE_LOOP
async def test_create_then_update_a_suite_and_read_its_cases(client: httpx.AsyncClient) -> None:
    text = """
name: api-smoke
description: checks
cases:
  - {name: greets, scenario: hello, inputs: {name: ann}, labels: [quick]}
  - {scenario: hello, rows: [{name: bob}, {name: cy}], expect: {status: SUCCEEDED}}
"""
    created = (await graphql(client, CREATE, {"definition": text}))["createSuite"]

    assert created["__typename"] == "SuiteSuccess", created
    assert created["suite"]["cases"] == [
        {
            "name": "greets",
            "scenario": "hello",
            "definitionName": None,
            "inputs": {"name": "ann"},
            "labels": ["quick"],
            "expectedStatus": "SUCCEEDED",
        },
        {
            "name": "hello[name=bob]",
            "scenario": "hello",
            "definitionName": None,
            "inputs": {"name": "bob"},
            "labels": [],
            "expectedStatus": "SUCCEEDED",
        },
        {
            "name": "hello[name=cy]",
            "scenario": "hello",
            "definitionName": None,
            "inputs": {"name": "cy"},
            "labels": [],
            "expectedStatus": "SUCCEEDED",
        },
    ]
    updated = (await graphql(client, UPDATE, {"definition": text + "tags: [v2]\n"}))["updateSuite"]
    assert (updated["suite"]["version"], updated["suite"]["tags"]) == (2, ["v2"])
    assert (await graphql(client, READ, {"name": "api-smoke"}))["suite"]["version"] == 2


@MODULE_LOOP
async def test_an_invalid_case_is_a_validation_error_naming_it(client: httpx.AsyncClient) -> None:
    text = "name: broken\ncases:\n  - {scenario: hello}\n  - {scenario: nope}\n"

    refused = (await graphql(client, CREATE, {"definition": text}))["createSuite"]

    assert refused["__typename"] == "ValidationError"
    assert refused["fieldErrors"] == [
        {"path": "cases[1].scenario", "message": "unknown scenario nope"},
    ]
    assert (await graphql(client, READ, {"name": "broken"}))["suite"] is None


def test_a_bad_suite_file_stops_the_server_naming_the_file(tmp_path: Path) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "bad.yaml").write_text("name: bad\ncases: [{scenario: missing}]\n")

    settings = {"RUNWIRE_SUITES_DIR": str(suites)}
    with (
        pytest.raises(RuntimeError, match=r"bad.yaml: cases\[0\].scenario"),
        running_server("sqlite", tmp_path, settings),
    ):
        pass
