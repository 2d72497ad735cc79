"""No process outlives its step: each escape route against the shell step and its reaper.

Escapees are `sleep <token>` processes (tests/support/escapes.py) started as a background child,
with `setsid`, by a double fork, and by a double fork that closed stdout and stderr first; each
test first sees them running, then ends the step its way, then finds none left.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.escapes import ESCAPEES, escapees, kill_all, survivors, token, wait_until
from tests.support.steps import OWN_USER_KINDS, RecordingContext

from runwire.domain.models import OutputStream
from runwire.runner.steps import StepResult, spawning, step_kinds
from runwire.runner.steps.commands import DRAIN_SECONDS
from runwire.runner.steps.containment import (
    MARKER_VARIABLE,
    Supervision,
    end_leftovers_of_dead_servers,
)
from runwire.runner.steps.processes import pid_namespace, process_ref
from runwire.settings import DEFAULT_STEP_UIDS, Settings

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

GRACE = 0.3
LEFT = (OutputStream.LOG, "killed processes left running in the background")


@pytest.fixture
def sleeps() -> Iterator[str]:
    """This test's token; whatever still runs with it afterwards is killed (and failed on)."""
    mark = token()
    yield mark
    kill_all(mark)


@pytest.fixture
def traversable() -> Iterator[Path]:
    """A directory any user may pass through (pytest's tmp is the test user's alone)."""
    path = Path(tempfile.mkdtemp(prefix="runwire-containment-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def until(predicate: object, seconds: float, what: str) -> None:
    await asyncio.to_thread(wait_until, predicate, seconds, what)


def started(context: RecordingContext, params: dict[str, object]) -> asyncio.Task[StepResult]:
    shell = OWN_USER_KINDS["shell"]
    return asyncio.create_task(shell.run(shell.parse(params, "with"), context))


async def test_no_escapee_outlives_a_step_that_succeeds(sleeps: str, tmp_path: Path) -> None:
    context = RecordingContext(grace_seconds=GRACE)
    go = tmp_path / "go"
    command = escapees(sleeps) + f"until [ -e {go} ]; do sleep 0.01; done; echo done"
    step = started(context, {"shell": True, "command": command})
    await until(lambda: len(survivors(sleeps)) == ESCAPEES, 5, "escapees running")
    go.touch()
    ended_at = time.monotonic()
    result = await step
    assert (result.exit_code, result.output["stdout"]) == (0, "done\n")
    assert time.monotonic() - ended_at < DRAIN_SECONDS + 2
    # Ended with the step, not after it: nothing is left by the time the result is out.
    assert survivors(sleeps) == []
    assert LEFT in context.calls


@pytest.mark.parametrize("how", ["stop", "timeout"])
async def test_no_escapee_outlives_a_step_stopped_or_timed_out(sleeps: str, how: str) -> None:
    context = RecordingContext(grace_seconds=GRACE)
    command = escapees(sleeps) + f"echo ready; sleep {sleeps}"
    # The runner bounds a step with asyncio.timeout (runner/execution.py): the same here.
    async with asyncio.timeout(None) as timeout:
        step = started(context, {"shell": True, "command": command})
        await until(lambda: len(survivors(sleeps)) == ESCAPEES + 1, 5, "escapees running")
        if how == "stop":
            step.cancel()
        else:
            timeout.reschedule(asyncio.get_running_loop().time())
        with pytest.raises(asyncio.CancelledError):
            await step
    assert survivors(sleeps) == []
    assert any(text.startswith("stopped: ") for stream, text in context.calls)


async def test_a_stop_after_sigint_kills_what_ignores_it(sleeps: str) -> None:
    context = RecordingContext(grace_seconds=GRACE)
    command = escapees(sleeps) + f"trap '' INT; echo ready; sleep {sleeps}; sleep {sleeps}"
    step = started(context, {"shell": True, "command": command})
    await until(lambda: len(survivors(sleeps)) == ESCAPEES + 1, 5, "escapees running")
    stopped_at = time.monotonic()
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert GRACE <= time.monotonic() - stopped_at < GRACE + 2
    assert (OutputStream.LOG, f"killed after a grace period of {GRACE:g} s") in context.calls
    assert survivors(sleeps) == []


async def test_a_stop_while_the_process_starts_leaves_nothing_behind(
    sleeps: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Processes start in a worker thread (spawning.py); a stop arriving meanwhile must wait for
    # the start and then stop what started, as a stop just after the start does.
    workers = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    monkeypatch.setattr(spawning, "_STARTERS", workers)
    held = threading.Event()
    occupied = asyncio.get_running_loop().run_in_executor(workers, held.wait)
    context = RecordingContext(grace_seconds=GRACE)
    step = started(context, {"shell": True, "command": escapees(sleeps) + f"sleep {sleeps}"})
    # The step's start is queued behind the occupied worker: stop it there.
    await until(lambda: workers._work_queue.qsize() == 1, 5, "the start queued")
    step.cancel()
    held.set()
    await occupied
    with pytest.raises(asyncio.CancelledError):
        await step
    workers.shutdown()
    assert survivors(sleeps) == []
    assert any(text.startswith("stopped: ") for stream, text in context.calls)


async def test_a_step_ends_when_its_children_end_on_their_own() -> None:
    context = RecordingContext(grace_seconds=GRACE)
    started_at = time.monotonic()
    result = await started(context, {"shell": True, "command": "(sleep 0.1; echo late) & echo"})
    # Waited for the child (it printed), well before the drain would have killed it.
    assert result.output["stdout"] == "\nlate\n"
    assert time.monotonic() - started_at < DRAIN_SECONDS
    assert LEFT not in context.calls


def _reaper_of(command: str) -> int:
    """The pid of this process's child that is the reaper running `command`."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
                stat = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(stat[1]) == os.getpid() and command.encode() in argv:
                return int(name)
    raise AssertionError("no reaper found")


async def test_a_killed_reaper_leaves_nothing_behind(sleeps: str) -> None:
    context = RecordingContext(grace_seconds=GRACE)
    command = escapees(sleeps) + f"sleep {sleeps}"
    step = started(context, {"shell": True, "command": command})
    await until(lambda: len(survivors(sleeps)) == ESCAPEES + 1, 5, "escapees running")
    os.kill(_reaper_of(command), signal.SIGKILL)  # only SIGKILL can stop a reaper
    result = await step
    assert result.error is not None
    assert result.error.startswith(
        "the step's reaper ended before its command (killed by signal SIGKILL);"
    )
    assert survivors(sleeps) == []


def test_a_reaper_ends_its_step_when_its_server_is_killed(sleeps: str, tmp_path: Path) -> None:
    # A stand-in server: a process that runs a step and is then SIGKILLed, as `kill -9` would.
    command = escapees(sleeps) + f"sleep {sleeps}"
    server = textwrap.dedent(f"""
        import asyncio
        from tests.support.steps import RecordingContext
        from tests.support.steps import OWN_USER_KINDS
        shell = OWN_USER_KINDS["shell"]
        params = shell.parse({{"shell": True, "command": {command!r}}}, "w")
        asyncio.run(shell.run(params, RecordingContext()))
    """)
    process = subprocess.Popen([sys.executable, "-c", server], cwd=Path(__file__).parents[2])
    try:
        wait_until(lambda: len(survivors(sleeps)) == ESCAPEES + 1, 10, "escapees running")
        process.kill()
    finally:
        process.wait()
    # The parent-death signal reaches the reaper at once; it kills all and exits.
    wait_until(lambda: survivors(sleeps) == [], 2, "no survivor")


def _marked(owner: str, command: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, MARKER_VARIABLE: f"{owner}:1"}
    return subprocess.Popen(["sh", "-c", command], env=env, start_new_session=True)


# A server starting elsewhere on the host meanwhile would end the dead server's processes first.
@pytest.mark.host_to_itself
def test_startup_ends_what_dead_servers_left_and_no_live_ones(sleeps: str) -> None:
    dead = subprocess.Popen(["sleep", "60"])
    ref = process_ref(dead.pid)
    assert ref is not None
    dead.kill()
    dead.wait()
    namespace = pid_namespace()
    me = process_ref(os.getpid())
    assert me is not None
    live = token()
    left = f"env -i sleep {sleeps} & sleep {sleeps}"
    processes = [
        # A dead server's: its marker, and a child that cleared its environment.
        _marked(f"{namespace}:{ref.pid}:{ref.start_time}", left),
        # A live server's (this test's process), and one seen from another pid namespace.
        _marked(f"{namespace}:{me.pid}:{me.start_time}", f"sleep {live}"),
        _marked(f"{namespace + 1}:{ref.pid}:{ref.start_time}", f"sleep {live}"),
    ]
    try:
        wait_until(lambda: len(survivors(sleeps)) == 2, 5, "leftovers running")
        wait_until(lambda: len(survivors(live)) == 2, 5, "live steps running")
        assert end_leftovers_of_dead_servers() >= 3  # sh, and both sleeps
        assert survivors(sleeps) == []
        assert len(survivors(live)) == 2
    finally:
        kill_all(live)
        for process in processes:
            process.kill()
            process.wait()


class _Output(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self.stdout = b""
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.stdout += data if fd == 1 else b""

    def process_exited(self) -> None:
        self.exited.set_result(None)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
async def test_a_command_run_as_another_user_cannot_kill_its_reaper(sleeps: str) -> None:
    # How a server running as root runs a step as an unprivileged user (here nobody, 65534).
    command = escapees(sleeps) + f"id -u; kill -9 $PPID 2>/dev/null; echo $?; sleep {sleeps}"
    async with Supervision.opened() as reaper:
        transport, output = await asyncio.get_running_loop().subprocess_exec(
            _Output,
            *reaper.wrap(["sh", "-c", command], run_as=(65534, 65534)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            pass_fds=reaper.pass_fds,
            start_new_session=True,
        )
        reaper.spawned(transport, output.exited)
        await until(lambda: len(survivors(sleeps)) == ESCAPEES + 1, 5, "escapees running")
        await until(lambda: output.stdout == b"65534\n1\n", 5, "the command's output")
        reaper.end()
        async with asyncio.timeout(5):
            await reaper.ended
        assert await reaper.reports.outcome == -signal.SIGKILL
    assert survivors(sleeps) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="switching the step's user needs root")
async def test_a_step_confined_to_another_user_neither_escapes_nor_kills_its_reaper(
    sleeps: str, traversable: Path
) -> None:
    # The shell step as a root server runs it by default: the reaper as root, the command as a
    # uid of its own through setpriv, in its own directory (under one that uid may traverse).
    root = traversable
    shell = step_kinds(Settings(step_dir=root / "steps"))["shell"]
    command = escapees(sleeps) + f"id -u; kill -9 $PPID 2>/dev/null; echo $?; sleep {sleeps}"
    context = RecordingContext(grace_seconds=GRACE)
    step = asyncio.create_task(
        shell.run(shell.parse({"shell": True, "command": command}, "w"), context)
    )
    await until(lambda: len(survivors(sleeps)) == ESCAPEES + 1, 10, f"escapees {context.calls}")
    await until(lambda: context.text(OutputStream.STDOUT).endswith("\n1\n"), 5, "its output")
    uid = int(context.text(OutputStream.STDOUT).split()[0])
    assert DEFAULT_STEP_UIDS[0] <= uid <= DEFAULT_STEP_UIDS[1]
    step.cancel()  # a stop
    with pytest.raises(asyncio.CancelledError):
        await step
    assert survivors(sleeps) == []
    assert not list((root / "steps").glob("*/*"))  # its directory went with it
