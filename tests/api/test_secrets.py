"""Workspace secrets through the API: write-only, masked in what steps report.

That another workspace can neither see nor use nor change them is in test_tenant_isolation.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from typing import Any

import pytest
from tests.support.graphql import definition, execute, follow, start, wait_for_status
from tests.support.server import Server

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Secrets are rows read with SQL that differs per database (upsert, RETURNING, IN lists).
SERVER_BACKENDS = ("sqlite", "postgres")

VALUE = "s3cr3t-VALUE-42"

SET = """
mutation($name: String!, $value: String!) {
  setSecret(name: $name, value: $value) {
    __typename
    ... on SetSecretSuccess { secret { name createdAt updatedAt updatedBy } }
    ... on Error { message }
    ... on ValidationError { fieldErrors { path message } }
    ... on PermissionDeniedError { permission }
  }
}
"""
DELETE = """
mutation($name: String!) {
  deleteSecret(name: $name) {
    __typename ... on DeleteSecretSuccess { name } ... on Error { message }
  }
}
"""
LIST = "{ secrets { name createdAt updatedAt updatedBy } }"
STEPS = """
query($id: ID!) {
  execution(id: $id) {
    status error steps { key status exitCode output error assertions { expected actual message } }
  }
}
"""
START = """
mutation($input: StartExecutionInput!) {
  startExecution(input: $input) {
    __typename
    ... on Error { message }
    ... on ValidationError { fieldErrors { path message } }
  }
}
"""


async def set_secret(server: Server, name: str, value: str, token: str | None = None) -> Any:
    return (await execute(server, SET, {"name": name, "value": value}, token=token))["setSecret"]


async def names(server: Server, token: str | None = None) -> list[str]:
    return [found["name"] for found in (await execute(server, LIST, token=token))["secrets"]]


async def test_set_replace_list_and_delete_never_show_a_value(server: Server) -> None:
    made = await set_secret(server, "DEPLOY_TOKEN", "first-value")
    assert made["__typename"] == "SetSecretSuccess", made
    replaced = await set_secret(server, "DEPLOY_TOKEN", "second-value")
    assert replaced["secret"]["createdAt"] == made["secret"]["createdAt"]
    assert replaced["secret"]["updatedAt"] >= made["secret"]["updatedAt"]
    assert replaced["secret"]["updatedBy"] == "token:bootstrap-admin"
    listing = await execute(server, LIST)
    assert "DEPLOY_TOKEN" in [found["name"] for found in listing["secrets"]]
    assert "value" not in json.dumps(listing).lower()

    # No field of the schema can carry a value back.
    fields = await execute(server, '{ __type(name: "Secret") { fields { name } } }')
    assert {f["name"] for f in fields["__type"]["fields"]} == {
        "name",
        "createdAt",
        "updatedAt",
        "updatedBy",
    }

    deleted = (await execute(server, DELETE, {"name": "DEPLOY_TOKEN"}))["deleteSecret"]
    assert deleted == {"__typename": "DeleteSecretSuccess", "name": "DEPLOY_TOKEN"}
    assert "DEPLOY_TOKEN" not in await names(server)
    again = (await execute(server, DELETE, {"name": "DEPLOY_TOKEN"}))["deleteSecret"]
    assert again == {"__typename": "NotFoundError", "message": "secret DEPLOY_TOKEN not found"}


@pytest.mark.parametrize(
    ("name", "value", "path"),
    [
        ("lower_case", "v", "name"),
        ("OK", "with\x00nul", "value"),
        ("OK", "x" * (64 * 1024 + 1), "value"),
        ("OK", "", "value"),
    ],
)
async def test_a_bad_name_or_value_is_a_validation_error_that_does_not_echo_it(
    server: Server, name: str, value: str, path: str
) -> None:
    refused = await set_secret(server, name, value)
    assert refused["__typename"] == "ValidationError", refused
    assert [error["path"] for error in refused["fieldErrors"]] == [path]
    if value:
        assert value not in json.dumps(refused)


async def test_a_start_naming_an_unknown_secret_is_refused_at_its_path(server: Server) -> None:
    text = definition(
        "{key: a, kind: sleep, with: {seconds: 0}}",
        '{key: b, kind: shell, secrets: [NOT_SET_ANYWHERE], with: {argv: ["true"]}}',
        name="needs-secret",
    )
    refused = (await execute(server, START, {"input": {"definition": text}}))["startExecution"]
    assert refused["__typename"] == "ValidationError", refused
    assert refused["fieldErrors"] == [
        {"path": "steps[1].secrets[0]", "message": "no secret NOT_SET_ANYWHERE in this workspace"}
    ]


async def test_a_value_is_masked_in_events_stored_output_errors_and_the_log(
    server: Server,
) -> None:
    assert (await set_secret(server, "API_KEY", VALUE))["__typename"] == "SetSecretSuccess"
    head, tail = VALUE[:7], VALUE[7:]
    # The value is written in two pieces a moment apart (two reads, two chunks), and whole to
    # stderr; the step fails, and its error and output carry what it printed.
    script = f"printf 'before {head}'; sleep 0.3; printf '{tail}\\n'; echo {VALUE} >&2; exit 3"
    text = definition(
        f'{{key: leak, kind: shell, secrets: [API_KEY], with: {{argv: ["sh", "-c", "{script}"]}},'
        f' expect: {{output_contains: "{tail}"}}}}',
        name="leaky",
    )
    execution_id = await start(server, definition=text)
    events = await follow(server, execution_id)

    chunks = [(e["stream"], e["text"]) for e in events if e["type"] == "OUTPUT"]
    assert [t for s, t in chunks if s == "stdout"] == ["before ", "***\n"], chunks
    assert "".join(t for s, t in chunks if s == "stderr") == "***\n"
    step_events = [e for e in events if e["type"] != "OUTPUT"]
    assert VALUE not in json.dumps(step_events)
    assert head not in json.dumps(events)

    found = (await execute(server, STEPS, {"id": execution_id}))["execution"]
    assert found["status"] == "FAILED"
    (step,) = found["steps"]
    assert step["output"]["stdout"] == "before ***\n"
    assert step["output"]["stderr"] == "***\n"
    assert VALUE not in json.dumps(found)
    assert head not in json.dumps(found)
    assert VALUE not in server.log.read_text()


async def test_the_audit_trail_names_the_secret_never_its_value(server: Server) -> None:
    await set_secret(server, "AUDITED_KEY", VALUE)
    await set_secret(server, "AUDITED_KEY", "")  # refused, audited too
    await execute(server, DELETE, {"name": "AUDITED_KEY"})
    trail = await execute(server, "{ activities(first: 50) { activity { action result detail } } }")
    ours = [
        entry["activity"]
        for entry in trail["activities"]
        if entry["activity"]["detail"].get("name") == "AUDITED_KEY"
    ]
    assert [(a["action"], a["result"]) for a in ours] == [
        ("deleteSecret", "DeleteSecretSuccess"),
        ("setSecret", "ValidationError"),
        ("setSecret", "SetSecretSuccess"),
    ]
    assert VALUE not in json.dumps(trail)


async def test_a_shell_step_gets_the_value_in_its_environment_and_prints_it_masked(
    server: Server,
) -> None:
    await set_secret(server, "ENV_KEY", VALUE)
    digest = hashlib.sha256(VALUE.encode()).hexdigest()
    script = 'printenv ENV_KEY; printf %s \\"$ENV_KEY\\" | sha256sum'
    text = definition(
        f'{{key: env, kind: shell, secrets: [ENV_KEY], with: {{argv: ["sh", "-c", "{script}"]}}}}',
        '{key: other, kind: shell, with: {argv: ["sh", "-c", "printenv ENV_KEY || echo unset"]}}',
        name="env",
    )
    execution_id = await start(server, definition=text)
    await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})
    found = (await execute(server, STEPS, {"id": execution_id}))["execution"]
    outputs = {step["key"]: step["output"]["stdout"] for step in found["steps"]}
    assert outputs["env"] == f"***\n{digest}  -\n"
    assert outputs["other"] == "unset\n"  # only the steps that name it get it


async def runwire_secret(server: Server, *arguments: str, stdin: str = "") -> str:
    """`runwire secret …` on the server's database, as an operator of Runwire runs it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runwire.cli",
        "secret",
        *arguments,
        env=server.env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode())
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_the_cli_sets_a_value_from_stdin(server: Server) -> None:
    if server.env["RUNWIRE_BUS_URL"] != "memory://":
        # A CLI process costs seconds here; its SQL is the store's, held to both databases by
        # tests/integration/test_store_contract.py.
        pytest.skip("the CLI runs once, on SQLite")
    await runwire_secret(server, "set", "CLI_KEY", stdin=VALUE + "\n")
    assert "CLI_KEY" in await names(server)
    # The value was stored without the newline that ended it: a step printing it is masked whole.
    script = f"printf {VALUE}"
    text = definition(
        f'{{key: p, kind: shell, secrets: [CLI_KEY], with: {{argv: ["sh", "-c", "{script}"]}}}}',
        name="cli-key",
    )
    execution_id = await start(server, definition=text)
    await wait_for_status(server, execution_id, {"SUCCEEDED"})
    found = (await execute(server, STEPS, {"id": execution_id}))["execution"]
    assert found["steps"][0]["output"]["stdout"] == "***"
