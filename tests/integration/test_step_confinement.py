"""Process steps in their confinement, with real processes: secrets, directories, user."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.steps import RecordingContext, wait_for

from runwire.domain.models import OutputStream
from runwire.runner.steps import ShellStep, StepResult
from runwire.runner.steps.confinement import Confinement, remove_directories_of_dead_servers
from runwire.runner.steps.containment import server_identity
from runwire.runner.steps.processes import pid_namespace, process_ref
from runwire.runner.steps.step_uids import LOCK_DIRECTORY
from runwire.settings import DEFAULT_STEP_UIDS, Settings

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@pytest.fixture
def step_root() -> Iterator[Path]:
    """A step directory root any user may reach (pytest's tmp_path is 0700), and beside it a
    directory only root may read (as the data directory is)."""
    base = Path(tempfile.mkdtemp(prefix="runwire-confinement-"))
    base.chmod(0o755)
    (base / "private").mkdir(mode=0o700)
    (base / "private" / "admin-token").write_text("rw_secret\n")
    yield base / "steps"
    shutil.rmtree(base, ignore_errors=True)


async def run(
    step_root: Path,
    params: dict[str, Any],
    context: RecordingContext | None = None,
    **settings: Any,
) -> StepResult:
    shell = ShellStep(
        Confinement.from_settings(Settings(step_dir=step_root, **{"step_user": "", **settings}))
    )
    return await shell.run(shell.parse(params, "with"), context or RecordingContext())


def _gone(path: Path) -> bool:
    return not path.exists()


def lines(result: StepResult) -> list[str]:
    assert result.exit_code == 0, result
    return str(result.output["stdout"]).splitlines()


async def test_secrets_and_declared_env_reach_the_process_and_server_env_does_not(
    step_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNWIRE_DATABASE_URL", "postgresql://leak")
    monkeypatch.setenv("RW_SERVER_CANARY", "leak")
    context = RecordingContext(secrets={"API_KEY": "s3cret"})
    result = await run(step_root, {"argv": ["env"], "env": {"GREETING": "hi"}}, context)
    env = dict(line.split("=", 1) for line in lines(result))
    assert env["API_KEY"] == "s3cret"
    assert env["GREETING"] == "hi"
    assert "RUNWIRE_DATABASE_URL" not in env
    assert "RW_SERVER_CANARY" not in env


async def test_each_attempt_has_its_own_directory_removed_when_it_ends(step_root: Path) -> None:
    argv = ["sh", "-c", 'pwd; echo "$HOME $TMPDIR"; touch left-behind']
    first = lines(await run(step_root, {"argv": argv}))
    second = lines(await run(step_root, {"argv": argv}))
    assert first[0] != second[0]
    ours = step_root / "server-{}-{}-{}".format(*server_identity().split(":"))
    for found in (first, second):
        directory = Path(found[0])
        assert directory.parent == ours  # under this server's directory
        assert found[1] == f"{directory} {directory}"
        assert _gone(directory)
    for level in (step_root, ours):
        assert stat.S_IMODE(os.stat(level).st_mode) == 0o711  # reach your own, list none
    assert os.listdir(step_root) == [ours.name]
    assert os.listdir(ours) == []


def test_a_dead_servers_step_directories_are_removed_and_no_one_elses(step_root: Path) -> None:
    # What `kill -9` of a server leaves: its steps' directories, one read-only inside.
    exited = subprocess.Popen(["true"])
    gone = process_ref(exited.pid)
    exited.wait()
    assert gone is not None
    namespace = pid_namespace()
    dead = step_root / f"server-{namespace}-{gone.pid}-{gone.start_time}"
    (dead / "ex-a-1-x" / "locked").mkdir(parents=True)
    (dead / "ex-a-1-x" / "locked" / "file").write_text("left")
    (dead / "ex-a-1-x" / "locked").chmod(0o500)
    live = step_root / "server-{}-{}-{}".format(*server_identity().split(":"))
    elsewhere = step_root / f"server-{namespace + 1}-{gone.pid}-{gone.start_time}"
    other = step_root / "not-a-server"
    for kept in (live, elsewhere, other):
        (kept / "ex-b-1-y").mkdir(parents=True)
    assert remove_directories_of_dead_servers(step_root) == 1
    assert sorted(os.listdir(step_root)) == sorted([live.name, elsewhere.name, other.name])
    assert remove_directories_of_dead_servers(step_root / "missing") == 0


async def test_cwd_relative_is_inside_the_step_directory_absolute_is_as_given(
    step_root: Path, tmp_path: Path
) -> None:
    relative = lines(
        await run(step_root, {"argv": ["sh", "-c", 'pwd; echo "$HOME"'], "cwd": "a/b"})
    )
    assert relative[0] == f"{relative[1]}/a/b"
    absolute = lines(await run(step_root, {"argv": ["pwd"], "cwd": str(tmp_path)}))
    assert absolute == [str(tmp_path)]
    missing = await run(step_root, {"argv": ["true"], "cwd": "/nonexistent/dir"})
    assert str(missing.error).startswith("cannot start:")
    assert not glob.glob(f"{step_root}/*/*")  # not even a failed start leaves its directory


@needs_root
async def test_as_root_the_step_runs_as_a_uid_of_its_own_and_cannot_read_the_servers_files(
    step_root: Path,
) -> None:
    private = step_root.parent / "private"
    script = (
        'id -u; id -G; stat -c "%u %a" "$HOME"; stat -c "%u" .;'
        ' cat "$PRIVATE/admin-token" 2>/dev/null || echo denied;'
        ' grep NoNewPrivs /proc/self/status; ls -A "$HOME"'
    )
    result = await run(
        step_root,
        {"argv": ["sh", "-c", script], "env": {"PRIVATE": str(private)}, "cwd": "sub"},
        step_user=None,  # the default for a server running as root
    )
    uid = lines(result)[0]
    assert DEFAULT_STEP_UIDS[0] <= int(uid) <= DEFAULT_STEP_UIDS[1]
    assert lines(result) == [
        uid,
        uid,  # its group: the same number, and no other
        f"{uid} 700",
        uid,
        "denied",
        "NoNewPrivs:\t1",
        "sub",
    ]


@needs_root
async def test_as_a_named_step_user_the_step_runs_as_that_account(step_root: Path) -> None:
    result = await run(step_root, {"argv": ["sh", "-c", "id -u; id -G"]}, step_user="nobody")
    assert lines(result) == ["65534", "65534"]


@needs_root
async def test_steps_running_at_once_have_uids_of_their_own_given_back_after(
    step_root: Path,
) -> None:
    gate = step_root.parent / "gate"
    # Its uid's lock stays with its reaper: the step's own processes hold no copy.
    holding = f"ls -l /proc/$$/fd | grep -c {LOCK_DIRECTORY}"
    script = f'id -u; {holding}; until [ -e "{gate}" ]; do sleep 0.02; done'
    contexts = [RecordingContext() for _ in range(3)]
    steps = [
        asyncio.create_task(run(step_root, {"argv": ["sh", "-c", script]}, context, step_user=None))
        for context in contexts
    ]
    try:
        await wait_for(
            lambda: all(c.text(OutputStream.STDOUT).count("\n") == 2 for c in contexts), 20
        )
        outputs = [context.text(OutputStream.STDOUT).split() for context in contexts]
        assert [held for _, held in outputs] == ["0", "0", "0"]
        uids = {uid for uid, _ in outputs}
        assert len(uids) == 3
        assert uids <= set(os.listdir(LOCK_DIRECTORY))  # each held while its step runs
    finally:
        gate.touch()
    for result in await asyncio.gather(*steps):
        assert result.exit_code == 0, result
    assert not uids & set(os.listdir(LOCK_DIRECTORY))  # given back: their locks are gone


@needs_root
async def test_the_steps_environment_reaches_no_program_run_as_root(step_root: Path) -> None:
    # The dynamic loader complains once per program it starts with a missing LD_PRELOAD: only
    # the step's own command (run as nobody) may see it, not setpriv or the shell before it.
    context = RecordingContext(secrets={"TOKEN": 'it\'s "quoted"\nand multi-line $HOME'})
    result = await run(
        step_root,
        {"argv": ["sh", "-c", 'printf %s "$TOKEN"'], "env": {"LD_PRELOAD": "/nonexistent.so"}},
        context,
        step_user=None,
    )
    assert result.output["stdout"] == context.secrets["TOKEN"]
    assert str(result.output["stderr"]).count("cannot be preloaded") == 1


@needs_root
async def test_names_a_shell_cannot_set_are_refused_when_switching_users(
    step_root: Path,
) -> None:
    result = await run(step_root, {"argv": ["true"], "env": {"A-B": "1"}}, step_user=None)
    assert result.error == "cannot start: environment names must be letters, digits and _: ['A-B']"
    assert not glob.glob(f"{step_root}/*/*")  # no attempt's directory left, in any server's


async def test_cwd_may_not_be_the_data_directory_nor_a_link_to_it(step_root: Path) -> None:
    data = step_root.parent / "private"
    link = step_root.parent / "link"
    link.symlink_to(data)
    for cwd in (str(data), f"{link}/"):
        result = await run(step_root, {"argv": ["true"], "cwd": cwd}, data_dir=data)
        assert result.error == f"cannot start: cwd {cwd!r} is inside the server's data directory"
