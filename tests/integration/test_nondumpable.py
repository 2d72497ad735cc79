"""A non-dumpable process keeps its environment from other processes of its own uid.

The server makes itself non-dumpable at start (runwire.nondumpable, called by `runwire serve`
and `runwire worker`), so that a step of a server that does not run as root, which runs as the
server's own user, cannot read the database URL in the server's /proc/<pid>/environ. Here two
processes of one uid, neither privileged, stand for the two: what the server calls is what the
holder calls, and the reader reads as a step would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runwire import nondumpable
from runwire.runner.steps.step_uids import StepUids
from runwire.settings import DEFAULT_STEP_UIDS

SECRET = "held-secret-5be0"

# Loads the module from its file (any user may read it; the venv may not be theirs) and
# reports: ready, then whether it made itself non-dumpable when told to.
HOLDER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("nondumpable", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print("ready", flush=True)
sys.stdin.readline()
print(module.keep_memory_private(), flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def as_one_user() -> Iterator[list[str]]:
    """The argv prefix that runs a program as one unprivileged uid (root reads everything)."""
    if os.geteuid() != 0:
        yield []
        return
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv to run as an unprivileged uid")
    held = StepUids(*DEFAULT_STEP_UIDS).take()  # one no step is using
    try:
        uid = str(held.uid)
        yield [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    finally:
        held.release()


def _read_environ(as_one_user: list[str], pid: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*as_one_user, "cat", f"/proc/{pid}/environ"], capture_output=True, text=True, timeout=10
    )


def test_a_non_dumpable_process_environment_is_closed_to_its_own_uid(
    as_one_user: list[str],
) -> None:
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    with subprocess.Popen(
        [*as_one_user, python, "-I", "-c", HOLDER, nondumpable.__file__],
        env={"PATH": "/usr/bin:/bin", "HELD_SECRET": SECRET},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n"
        # Dumpable, as every program is after exec: its uid reads its environment.
        before = _read_environ(as_one_user, holder.pid)
        assert SECRET in before.stdout, before
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "True\n"
        after = _read_environ(as_one_user, holder.pid)
        assert after.returncode != 0
        assert "Permission denied" in after.stderr
        assert SECRET not in after.stdout
        holder.stdin.close()  # it ends; leaving the block waits for it
