"""A step's `stdin:` reaches its process in a real server, whose event loop is uvloop's."""

from __future__ import annotations

import json

from tests.support.graphql import definition, execute, start, wait_for_status
from tests.support.server import Server

STEPS = """
query($id: ID!) { execution(id: $id) { status error steps { key status output } } }
"""


async def test_shell_and_agent_steps_read_their_stdin_to_its_end(server: Server) -> None:
    result = json.dumps({"type": "result", "text": "read it all", "turns": 1})
    execution_id = await start(
        server,
        definition=definition(
            '{key: shell, kind: shell, with: {argv: [cat], stdin: "line one\\nline two"}}',
            "{key: agent, kind: agent, with: {command: [cat], format: ndjson, stdin: "
            + json.dumps(result)
            + "}}",
        ),
    )
    # Without the end of its stdin `cat` never ends: the timeout would say so.
    await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"}, timeout=20)
    found = (await execute(server, STEPS, {"id": execution_id}))["execution"]
    assert found["status"] == "SUCCEEDED", found
    outputs = {step["key"]: step["output"] for step in found["steps"]}
    assert outputs["shell"]["stdout"] == "line one\nline two"
    assert outputs["agent"]["result"] == "read it all"
