"""RUNWIRE_STEP_SANDBOX=bubblewrap with real processes: network, filesystem, other processes."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.steps import RecordingContext

from runwire.runner.steps import ShellStep, StepResult
from runwire.runner.steps.confinement import Confinement
from runwire.settings import Settings


def _sandbox_or_why_not() -> str | None:
    try:
        Confinement.from_settings(Settings(step_user="", step_sandbox="bubblewrap"))
    except ValueError as error:
        return str(error)
    return None


_WHY_NOT = _sandbox_or_why_not()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=f"no sandbox: {_WHY_NOT}")


@pytest.fixture
def server_dirs() -> Iterator[tuple[Path, Path]]:
    """A step root and a data directory that every user could read without the sandbox."""
    base = Path(tempfile.mkdtemp(prefix="runwire-sandbox-"))
    base.chmod(0o755)
    data = base / "data"
    data.mkdir(mode=0o755)
    (data / "admin-token").write_text("rw_secret\n")
    (data / "admin-token").chmod(0o644)
    yield base / "steps", data
    shutil.rmtree(base, ignore_errors=True)


async def run(server_dirs: tuple[Path, Path], params: dict[str, Any]) -> list[str]:
    step_root, data = server_dirs
    settings = Settings(step_dir=step_root, data_dir=data, step_sandbox="bubblewrap")
    shell = ShellStep(Confinement.from_settings(settings))  # the default user: nobody as root
    result: StepResult = await shell.run(shell.parse(params, "with"), RecordingContext())
    assert result.exit_code == 0, result
    return str(result.output["stdout"]).splitlines()


PROBE = """
touch own && echo own-writable
touch /usr/runwire-probe 2>/dev/null || echo system-read-only
cat "$DATA/admin-token" 2>/dev/null || echo data-hidden
ls -A /tmp | grep -v '^runwire' | wc -l
ls -A /run | wc -l
ls /proc | grep -c '^[0-9]'
(exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && echo network || echo no-network
"""


async def test_a_sandboxed_step_sees_a_read_only_system_and_only_its_own_files(
    server_dirs: tuple[Path, Path],
) -> None:
    env = {"DATA": str(server_dirs[1])}
    found = await run(server_dirs, {"argv": ["bash", "-c", PROBE], "env": env})
    # Its own process tree only: bwrap's init, bash, ls, grep.
    assert found == [
        "own-writable",
        "system-read-only",
        "data-hidden",
        "0",
        "0",
        found[5],
        "no-network",
    ]
    assert int(found[5]) <= 5


async def test_network_is_for_steps_that_declare_it(server_dirs: tuple[Path, Path]) -> None:
    # Postgres listens on 127.0.0.1:5432 here; the host's loopback is reachable with the network.
    probe = "(exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && echo network || echo no-network"
    assert await run(server_dirs, {"argv": ["bash", "-c", probe], "network": True}) == ["network"]
    assert await run(server_dirs, {"argv": ["bash", "-c", probe]}) == ["no-network"]
