"""What a shell step of a real server can reach: not the server's settings, data or user, nor
another workspace's secrets in the processes of its steps.

The server runs as root here (as in CI) with the default: a uid of its own for each step attempt
(test servers elsewhere opt out: see OWN_USER_STEPS), in a directory any user may traverse, so
only the data directory's own mode keeps a step out of it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.graphql import definition, execute, gated_step, start, wait_for_status
from tests.support.server import Server, running_server

from runwire.runner.steps.confinement import PASSED_ENV
from runwire.runner.steps.containment import MARKER_VARIABLE
from runwire.runner.steps.report_channel import REPORT_FD_VARIABLE
from runwire.settings import DEFAULT_STEP_UIDS

SERVER_BACKENDS = ("sqlite", "postgres")
CANARY = "canary-4c1d9e"
# RUNWIRE_STEP_USER unset: the default.
SERVER_SETTINGS = {"RUNWIRE_STEP_USER": None, "RW_SERVER_CANARY": CANARY}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs steps as another user: needs root")

OUTPUT = "query($id: ID!) { execution(id: $id) { steps { key status output error } } }"

# Reports what the step sees, one labelled part each; `cat` failures are reported, not fatal.
PROBE = """
echo "uid=$(id -u)"
echo "pwd=$(pwd)"
echo "home=$(stat -c '%u %g %a' "$HOME")"
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
    uid = next(line for line in probe["lines"] if line.startswith("uid="))[4:]
    assert env["USER"] == env["LOGNAME"] == uid  # no account: its name is the number


async def test_a_step_runs_as_a_uid_of_its_own_in_its_own_directory_outside_the_data(
    server: Server,
) -> None:
    probe = await _run_probe(server)
    lines = probe["lines"]
    first, last = DEFAULT_STEP_UIDS
    uid = int(next(line for line in lines if line.startswith("uid="))[4:])
    assert first <= uid <= last
    assert f"home={uid} {uid} 700" in lines  # its directory is its own; its group, its number
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


SET_SECRET = """
mutation($name: String!, $value: String!) {
  setSecret(name: $name, value: $value) { __typename ... on Error { message } }
}
"""
SECRET_OF_A = "a-only-7f3e91c2"

# Every process environment in /proc the step can open: `read PID BASE64` or `failed PID WHY`.
PROC_READER = """
for file in /proc/[0-9]*/environ; do
  pid=${file#/proc/}; pid=${pid%/environ}
  if why=$(cat "$file" 2>&1 >/dev/null); then
    echo "read $pid $(base64 -w0 < "$file")"
  else
    echo "failed $pid $why"
  fi
done
"""


def _cli(server: Server, *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "runwire.cli", *arguments],
        env=server.env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def _holding(value: bytes) -> list[int]:
    """The pids whose environment holds `value` (read as root: who can see any)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if value in Path(f"/proc/{name}/environ").read_bytes():
                    found.append(int(name))
            except OSError:
                continue  # gone meanwhile
    return found


async def test_a_step_of_another_workspace_cannot_read_a_running_steps_secrets(
    server: Server,
) -> None:
    """The issue's attack: while a step of workspace A runs with a secret in its environment, a
    step of workspace B reads every /proc/<pid>/environ it can."""
    workspace = f"ws-{os.urandom(3).hex()}"
    await asyncio.to_thread(_cli, server, "workspace", "create", workspace)
    token_b = await asyncio.to_thread(
        _cli, server, "token", "create", "--workspace", workspace, "--name", "b", "--role", "admin"
    )
    made = await execute(server, SET_SECRET, {"name": "A_KEY", "value": SECRET_OF_A})
    assert made["setSecret"]["__typename"] == "SetSecretSuccess", made
    gate = _data_dir(server).parent / f"gate-{workspace}"
    held = await start(
        server,
        definition=definition(gated_step("hold", gate, "secrets: [A_KEY], "), name="holds"),
    )
    try:
        # A's step runs with the secret in its environment (which root can read).
        async with asyncio.timeout(30):
            while not (holders := await asyncio.to_thread(_holding, SECRET_OF_A.encode())):
                await asyncio.sleep(0.05)
        step = {"key": "look", "kind": "shell", "with": {"argv": ["sh", "-c", PROC_READER]}}
        text = json.dumps({"name": "look", "steps": [step]})
        looking = await start(server, token=token_b, definition=text)
        await wait_for_status(server, looking, {"SUCCEEDED", "FAILED"}, token=token_b)
        found = (await execute(server, OUTPUT, {"id": looking}, token=token_b))["execution"]
        assert found["steps"][0]["status"] == "SUCCEEDED", found
        stdout = found["steps"][0]["output"]["stdout"]
        # Its shell ran all along (its `sleep`s come and go): B's step met it.
        throughout = set(holders) & set(await asyncio.to_thread(_holding, SECRET_OF_A.encode()))
        assert throughout
    finally:
        gate.touch()
    await wait_for_status(server, held, {"SUCCEEDED"})
    lines = stdout.splitlines()
    read = {
        int(pid): base64.b64decode(content)
        for _, pid, content in (line.split(" ", 2) for line in lines if line.startswith("read "))
    }
    failed = {
        int(pid): why
        for _, pid, why in (line.split(" ", 2) for line in lines if line.startswith("failed "))
    }
    assert read, lines  # its own processes' it reads: reading works
    assert not [pid for pid, content in read.items() if SECRET_OF_A.encode() in content]
    assert SECRET_OF_A not in stdout
    for pid in throughout:
        assert "Permission denied" in failed[pid], lines
