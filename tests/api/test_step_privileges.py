"""What a shell step of a real server can reach: not the server's settings, data or user.

The server runs as root here (as in CI) with the default step user, `nobody` (test servers
elsewhere opt out: see OWN_USER_STEPS), in a directory any user may traverse, so only the data
directory's own mode keeps a step out of it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.graphql import execute, start, wait_for_status
from tests.support.server import Server, running_server

from runwire.runner.steps.confinement import PASSED_ENV
from runwire.runner.steps.containment import MARKER_VARIABLE
from runwire.runner.steps.report_channel import REPORT_FD_VARIABLE

SERVER_BACKENDS = ("sqlite", "postgres")
CANARY = "canary-4c1d9e"
SERVER_SETTINGS = {"RUNWIRE_STEP_USER": "nobody", "RW_SERVER_CANARY": CANARY}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs steps as another user: needs root")

OUTPUT = "query($id: ID!) { execution(id: $id) { steps { key status output error } } }"

# Reports what the step sees, one labelled part each; `cat` failures are reported, not fatal.
PROBE = """
echo "uid=$(id -u)"
echo "pwd=$(pwd)"
for file in "$PUBLIC" "$DATA/admin-token" "$DATA/runwire.sqlite"; do
  if cat "$file" >/dev/null 2>&1; then echo "read=$file"; fi
done
if ls "$DATA" >/dev/null 2>&1; then echo "listed=$DATA"; fi
echo "env-begin"; env -0 | base64 -w0; echo; echo "env-end"
"""


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server whose directory (unlike pytest's tmp_path, 0700) every user may traverse."""
    directory = Path(tempfile.mkdtemp(prefix="runwire-confinement-"))
    directory.chmod(0o755)
    # What a step can read beside the data directory: shows that the probe would see a leak.
    (directory / "public").write_text("anyone\n")
    (directory / "public").chmod(0o644)
    try:
        with running_server(request.param, directory, SERVER_SETTINGS) as found:
            yield found
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _data_dir(server: Server) -> Path:
    return Path(server.env["RUNWIRE_DATA_DIR"])


def _public(server: Server) -> Path:
    return _data_dir(server).parent / "public"


async def _run_probe(server: Server) -> dict[str, Any]:
    step = {
        "key": "probe",
        "kind": "shell",
        "with": {
            "argv": ["sh", "-c", PROBE],
            "env": {"DATA": str(_data_dir(server)), "PUBLIC": str(_public(server))},
        },
    }
    text = json.dumps({"name": "probe", "steps": [step]})
    execution_id = await start(server, definition=text)
    await wait_for_status(server, execution_id, {"SUCCEEDED", "FAILED"})
    found = (await execute(server, OUTPUT, {"id": execution_id}))["execution"]["steps"][0]
    assert found["status"] == "SUCCEEDED", found
    stdout = found["output"]["stdout"]
    lines = stdout.splitlines()
    encoded = lines[lines.index("env-begin") + 1]
    pairs = [item.split("=", 1) for item in base64.b64decode(encoded).decode().split("\0") if item]
    return {"lines": lines, "env": dict(pairs), "stdout": stdout}


async def test_a_step_sees_only_the_allowlist_and_what_it_declared(server: Server) -> None:
    probe = await _run_probe(server)
    env = probe["env"]
    # Of RUNWIRE_* only the reaper's marker (which server's step it is; no secret) and the
    # report channel's descriptor number are there.
    assert sorted(name for name in env if name.startswith("RUNWIRE_")) == sorted(
        [MARKER_VARIABLE, REPORT_FD_VARIABLE]
    )
    assert env[REPORT_FD_VARIABLE] == "3"
    assert "RW_SERVER_CANARY" not in env
    assert CANARY not in probe["stdout"]
    database_url = server.env.get("RUNWIRE_DATABASE_URL")
    if database_url:  # Postgres: the URL the step used with psql
        assert database_url not in probe["stdout"]
    extra = set(env) - PASSED_ENV - {"HOME", "TMPDIR", "USER", "LOGNAME", "DATA", "PUBLIC", "PWD"}
    extra -= {MARKER_VARIABLE, REPORT_FD_VARIABLE}
    assert not [name for name in extra if not name.startswith("LC_")], extra
    assert env["DATA"] == str(_data_dir(server))  # declared env reaches the step
    assert env["USER"] == "nobody"


async def test_a_step_runs_as_nobody_in_its_own_directory_outside_the_data(
    server: Server,
) -> None:
    probe = await _run_probe(server)
    lines = probe["lines"]
    assert "uid=65534" in lines
    read = [line for line in lines if line.startswith(("read=", "listed="))]
    assert read == [f"read={_public(server)}"], lines
    workdir = Path(next(line for line in lines if line.startswith("pwd="))[4:])
    assert probe["env"]["HOME"] == probe["env"]["TMPDIR"] == str(workdir)
    assert workdir.parent.parent == Path(tempfile.gettempdir()) / "runwire-steps"
    assert workdir.parent.name.startswith("server-")  # the directory of the server's steps
    assert not await asyncio.to_thread(workdir.exists)  # removed when the step ended


def test_the_data_directory_is_the_servers_alone(server: Server) -> None:
    data = _data_dir(server)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "admin-token").stat().st_mode) == 0o600
    if not server.env.get("RUNWIRE_DATABASE_URL"):
        assert stat.S_IMODE((data / "runwire.sqlite").stat().st_mode) == 0o600
