"""Stopping: SIGINT to the group, grace, SIGKILL to the group and escaped descendants."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.graphql import STOP, definition, execute, follow, start, wait_for_status
from tests.support.server import Server

SERVER_SETTINGS = {"RUNWIRE_GRACE_SECONDS": "0.5"}

# A parent that ignores SIGINT, a child in its group that ignores it too, and a grandchild
# that escaped into its own session; each writes its pid to a file.
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
pids = sys.argv[1]
ignore = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", ignore])
sleep = "import time; time.sleep(600)"
escaped = subprocess.Popen([sys.executable, "-c", sleep], start_new_session=True)
with open(pids, "w") as f:
    f.write(f"{os.getpid()} {child.pid} {escaped.pid}")
print("ready", flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_stop_kills_a_sigint_ignoring_process_tree(server: Server, tmp_path: Path) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    pids_file = tmp_path / "pids"
    text = definition(
        f'{{key: stubborn, kind: shell, with: {{argv: ["python3", "{script}", "{pids_file}"]}}}}',
        '{key: after, kind: shell, with: {argv: ["true"]}}',
    )
    execution_id = await start(server, definition=text, graceSeconds=0.5)
    async with asyncio.timeout(20):
        while not (pids_file.exists() and len(pids_file.read_text().split()) == 3):
            await asyncio.sleep(0.05)
    pids = [int(pid) for pid in pids_file.read_text().split()]
    assert all(_alive(pid) for pid in pids)

    result = (await execute(server, STOP, {"id": execution_id, "reason": "test over"}))[
        "stopExecution"
    ]
    assert result["__typename"] == "StopExecutionSuccess"
    assert result["execution"]["status"] in {"STOPPING", "CANCELLED"}

    final = await wait_for_status(server, execution_id, {"CANCELLED"}, timeout=10)
    assert "test over" in final["error"]
    async with asyncio.timeout(5):
        while any(_alive(pid) for pid in pids):
            await asyncio.sleep(0.05)

    events = await follow(server, execution_id)
    statuses = [e["status"] for e in events if e["type"] == "EXECUTION_STATUS"]
    assert statuses == ["QUEUED", "RUNNING", "STOPPING", "CANCELLED"]
    step_events = [e for e in events if e["type"] == "STEP_STATUS"]
    assert [e["stepStatus"] for e in step_events] == ["RUNNING", "CANCELLED"]

    audit = await execute(
        server,
        "query($id: ID!) { execution(id: $id) { activities { action actor result detail } } }",
        {"id": execution_id},
    )
    activities = audit["execution"]["activities"]
    # The audit trail names who asked, what, and the result: oldest first.
    assert [a["action"] for a in activities] == ["startExecution", "stopExecution"]
    assert activities[-1] == {
        "action": "stopExecution",
        "actor": "token:bootstrap-admin",
        "result": "StopExecutionSuccess",
        "detail": {"id": execution_id, "reason": "test over"},
    }

    again = (await execute(server, STOP, {"id": execution_id}))["stopExecution"]
    assert again["__typename"] == "InvalidTransitionError"
    assert again["currentStatus"] == "CANCELLED"


async def test_stop_twice_while_stopping_is_a_typed_error(server: Server, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    text = definition(
        '{key: stubborn, kind: shell, with: {argv: ["sh", "-c",'
        f' "trap \\"\\" INT; touch {ready}; sleep 30"]}}}}'
    )
    execution_id = await start(server, definition=text, graceSeconds=2)
    # Until the trap is set, SIGINT would end it at once: wait for the step to say so.
    async with asyncio.timeout(20):
        while not ready.exists():
            await asyncio.sleep(0.02)
    first = (await execute(server, STOP, {"id": execution_id}))["stopExecution"]
    assert first["execution"]["status"] == "STOPPING"
    second = (await execute(server, STOP, {"id": execution_id}))["stopExecution"]
    assert second["__typename"] == "InvalidTransitionError"
    assert second["currentStatus"] == "STOPPING"
    await wait_for_status(server, execution_id, {"CANCELLED"})


async def test_stop_unknown_execution_is_not_found(server: Server) -> None:
    result = (await execute(server, STOP, {"id": "no-such-id"}))["stopExecution"]
    assert result == {"__typename": "NotFoundError", "message": "execution no-such-id not found"}
