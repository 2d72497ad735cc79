"""Calls that listen at the same time on one server keep its runner alive, and the processes
that recognise their speech end with the server.

Recognition is CPU work that holds the GIL. Run in the server's threads it starved the event
loop: 10 calls listening at once stopped the runner renewing its leases, and it gave every one
of them up ("its runner was lost"). Here the leases are short (given up after 2 s without a
renewal, against the default's 4 s), so a loop held that long fails these calls; they must all
pass. With recognition in threads they failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path

import pytest
from tests.support.graphql import definition, execute, start, wait_for_status
from tests.support.server import Server, running_server

SERVER_BACKENDS = ("postgres",)
CALLS = 6
SERVER_SETTINGS = {
    "RUNWIRE_LEASE_SECONDS": "3",
    "RUNWIRE_HEARTBEAT_SECONDS": "0.5",
    "RUNWIRE_RUNNER_SLOTS": str(CALLS),
}

CALL = {
    "dial": {"target": "bank", "driver": "simulated"},
    "actions": [
        {"listen": {"timeout": 10, "phrases": ["press one for balances"]}},
        {"expect": {"transcript_contains": "press one for balances"}},
        {"press": "1"},
        {"listen": {"timeout": 10, "phrases": ["anything else"]}},
        {"expect": {"transcript_contains": "anything else"}},
        {"hangup": True},
    ],
}

QUERY = """
query($id: ID!) { execution(id: $id) { status steps { status error } } }
"""


# Six calls at once are a load test (about 25 s on 2 cores): in the long run CI makes, while
# `make test` keeps the killed-server test below, which also runs recognition in its workers.
@pytest.mark.long
async def test_calls_listening_together_all_pass_on_short_leases(server: Server) -> None:
    step = f"{{key: call, kind: call, timeout: 120, with: {json.dumps(CALL)}}}"
    ids = await asyncio.gather(
        *(start(server, definition=definition(step, name=f"call-{n}")) for n in range(CALLS))
    )
    for execution_id in ids:
        await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"}, timeout=180)
    found = [(await execute(server, QUERY, {"id": i}))["execution"] for i in ids]
    assert [execution["status"] for execution in found] == ["SUCCEEDED"] * CALLS, found


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid and stat[0] != "Z":
                    found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split())[0] != "Z"
    return False


# One prompt heard: enough for the server to start its recognition workers, without the rest of
# the menu's real-time audio.
HEARD_ONCE = {
    "dial": CALL["dial"],
    "actions": [*CALL["actions"][:2], {"hangup": True}],
}


async def call_once(server: Server) -> None:
    step = f"{{key: call, kind: call, timeout: 120, with: {json.dumps(HEARD_ONCE)}}}"
    execution_id = await start(server, definition=definition(step, name="call"))
    await wait_for_status(server, execution_id, {"SUCCEEDED"}, timeout=120)


def test_a_killed_server_leaves_no_recognition_workers(tmp_path: Path) -> None:
    with running_server("postgres", tmp_path) as killed:
        asyncio.run(call_once(killed))
        workers = children_of(killed.process.pid)
        assert workers, "the call recognised speech in worker processes of the server"
        killed.process.send_signal(signal.SIGKILL)
        assert killed.process.wait(timeout=20)
        # Each worker notices it has lost its parent within a second or so.
        deadline = time.monotonic() + 30
        while any(alive(worker) for worker in workers):
            assert time.monotonic() < deadline, "recognition workers outlived their server"
            time.sleep(0.1)
