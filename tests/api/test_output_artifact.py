"""RUNWIRE_OUTPUT_ARTIFACT: a step attempt whose output a budget truncated keeps it whole, as
its artifact output.log (secret values masked, as in events); one within its budgets stores none."""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx
from tests.support.graphql import definition, execute, follow, start, wait_for_status
from tests.support.server import Server

# The artifact is a row on both databases, stored as the step ends.
SERVER_BACKENDS = ("sqlite", "postgres")
STEP_BYTES = 10_000
SERVER_SETTINGS = {
    "RUNWIRE_OUTPUT_STEP_BYTES": str(STEP_BYTES),
    "RUNWIRE_OUTPUT_ARTIFACT": "true",
}
SECRET = "hunter2-in-the-flood"
LINES = 5000  # 5000 numbered lines of 30 bytes each: 150,000 bytes, 15 times the budget

SET = """
mutation($name: String!, $value: String!) {
  setSecret(name: $name, value: $value) { __typename }
}
"""
QUERY = """
query($id: ID!) { execution(id: $id) { steps { key artifacts { name mediaType bytes url } } } }
"""


def _step(key: str, lines: int, extra: str = "") -> str:
    script = (
        "import os, sys\n"
        "write = sys.stdout.write\n"
        f"for i in range({lines}): write(f'line {{i:06d}} of the flood .....\\n')\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('secret: ' + os.environ.get('FLOOD_KEY', '-') + '\\n')\n"
    )
    argv = json.dumps([sys.executable, "-c", script])
    return f"{{key: {key}, kind: shell, {extra} with: {{argv: {argv}}}}}"


async def _run(server: Server, *steps: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    execution_id = await start(server, definition=definition(*steps))
    found = await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})
    assert found["status"] == "SUCCEEDED", found
    data = await execute(server, QUERY, {"id": execution_id})
    by_key = {step["key"]: step["artifacts"] for step in data["execution"]["steps"]}
    return await follow(server, execution_id), by_key


async def test_a_truncated_attempt_keeps_its_whole_output_as_an_artifact(server: Server) -> None:
    assert (await execute(server, SET, {"name": "FLOOD_KEY", "value": SECRET}))["setSecret"][
        "__typename"
    ] == "SetSecretSuccess"
    events, artifacts = await _run(
        server, _step("flood", LINES, "secrets: [FLOOD_KEY],"), _step("quiet", 10)
    )
    # The events were truncated as always...
    shown = "".join(
        e["text"] for e in events if e.get("stream") == "stdout" and e["stepKey"] == "flood"
    )
    assert len(shown) <= STEP_BYTES
    assert any(e["type"] == "OUTPUT_TRUNCATED" for e in events)
    logged = [e["text"] for e in events if e.get("stream") == "log"]
    assert any("kept as artifact output.log" in text for text in logged), logged
    # ...and the artifact has every line, the secret masked.
    [saved] = artifacts["flood"]
    assert (saved["name"], saved["mediaType"]) == ("output.log", "text/plain; charset=utf-8")
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(saved["url"])
    assert response.status_code == 200
    text = response.text
    assert saved["bytes"] == len(response.content)
    lines = text.splitlines()
    assert lines[:LINES] == [f"line {i:06d} of the flood ....." for i in range(LINES)]
    assert SECRET not in text
    assert lines[LINES:] == ["secret: ***"]
    # A step within its budgets stores nothing.
    assert artifacts["quiet"] == []
