"""A server killed with `kill -9` while steps start escapees: none survives it, and a server
started after a crash that also killed the reapers ends what they left, and only that.

Escapees are `sleep <token>` processes (tests/support/escapes.py): background children, `setsid`
children and double forks, one with its pipes closed, four executions at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.escapes import ESCAPEES, escapees, kill_all, survivors, token, wait_until
from tests.support.faults import FAULT_SETTINGS
from tests.support.graphql import definition, start
from tests.support.server import Server, database, running_server
from tests.support.steps import OWN_USER_KINDS, RecordingContext

EXECUTIONS = 4
LEFTOVERS_KILLED = re.compile(r"killed (\d+) processes left by steps")

# A server starting anywhere on the host would end the crashed server's leftovers before this
# test's next server can: no other test runs meanwhile.
pytestmark = pytest.mark.host_to_itself

# Each step's leader runs `sleep <token>` too, after starting the escapees.
PER_STEP = ESCAPEES + 1


def _work(mark: str) -> str:
    command = json.dumps(escapees(mark) + f"sleep {mark}")
    return definition(f"{{key: escape, kind: shell, with: {{shell: true, command: {command}}}}}")


def _reapers_of(server: Server) -> list[int]:
    """The reaper processes a server runs its steps under (its children running reaper.py)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
                parent = int(Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()[1])
                if parent == server.process.pid and any(a.endswith(b"/reaper.py") for a in argv):
                    found.append(int(name))
    return found


@contextlib.contextmanager
def _tokens(count: int) -> Iterator[list[str]]:
    marks = [token() for _ in range(count)]
    try:
        yield marks
    finally:
        for mark in marks:
            kill_all(mark)


async def _running_steps(server: Server, mark: str) -> None:
    for _ in range(EXECUTIONS):
        await start(server, definition=_work(mark))
    await asyncio.to_thread(
        wait_until, lambda: len(survivors(mark)) == EXECUTIONS * PER_STEP, 20, "steps running"
    )


def _killed(server: Server) -> None:
    server.process.send_signal(signal.SIGKILL)
    assert server.process.wait(timeout=10)


@pytest.fixture(params=["sqlite", "postgres"])
def databases(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[str | None]]]:
    """A backend and a fresh database for each of the test's three servers (None: SQLite's)."""
    with contextlib.ExitStack() as stack:
        yield request.param, [stack.enter_context(database(request.param)) for _ in range(3)]


@pytest.fixture(
    params=[
        pytest.param("", id="server-user"),
        pytest.param(
            None,
            id="own-uids",
            marks=pytest.mark.skipif(os.geteuid() != 0, reason="a uid per step needs root"),
        ),
    ]
)
def settings(request: pytest.FixtureRequest) -> dict[str, str | None]:
    """Steps as the server's user, or (a root server's default) each as a uid of its own."""
    return {**FAULT_SETTINGS, "RUNWIRE_STEP_USER": request.param}


# Embedded servers (a runner in each). Containment does not touch the database, but the issue
# asks for both: a server on Postgres is killed and restarted the same way.
async def test_no_step_process_outlives_a_killed_server(
    tmp_path: Path, databases: tuple[str, list[str | None]], settings: dict[str, str | None]
) -> None:
    backend, (url_a, url_b, url_c) = databases
    with _tokens(3) as (killed, crashed, live):
        # 1. `kill -9` of the server: each reaper gets its parent-death signal and ends all.
        with running_server(backend, tmp_path / "a", settings, url_a) as server:
            await _running_steps(server, killed)
            await asyncio.to_thread(_killed, server)
            await asyncio.to_thread(
                wait_until, lambda: survivors(killed) == [], 3, "no survivor of kill -9"
            )

        # 2. A crash that kills the reapers too (server stopped, reapers and server SIGKILLed):
        # their processes go to init, and the next server to start on the host ends them.
        with running_server(backend, tmp_path / "b", settings, url_b) as server:
            await _running_steps(server, crashed)
            server.process.send_signal(signal.SIGSTOP)  # it must not see its reapers die
            reapers = _reapers_of(server)
            assert len(reapers) == EXECUTIONS
            for pid in reapers:
                os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(_killed, server)
        assert len(survivors(crashed)) == EXECUTIONS * PER_STEP  # orphans: nobody ends them

        # A live server's step on the same host (this test process's) must be left alone.
        shell, context = OWN_USER_KINDS["shell"], RecordingContext()
        params = shell.parse({"shell": True, "command": escapees(live) + f"sleep {live}"}, "w")
        step = asyncio.create_task(shell.run(params, context))
        try:
            await asyncio.to_thread(
                wait_until, lambda: len(survivors(live)) == PER_STEP, 10, "live step running"
            )
            with running_server(backend, tmp_path / "c", settings, url_c) as server:
                await asyncio.to_thread(
                    wait_until, lambda: survivors(crashed) == [], 5, "leftovers ended on start"
                )
                assert len(survivors(live)) == PER_STEP
                # The server logs the count once the kills are done: the processes can be gone
                # before the line is written.
                log_path = server.log
                await asyncio.to_thread(
                    wait_until,
                    lambda: LEFTOVERS_KILLED.search(log_path.read_text()) is not None,
                    30,
                    "the leftovers' kill logged",
                )
                log = log_path.read_text()
        finally:
            step.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await step
        assert survivors(live) == []
        logged = LEFTOVERS_KILLED.search(log)
        assert logged is not None
        assert int(logged[1]) >= EXECUTIONS * PER_STEP
