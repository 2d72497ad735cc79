"""The shell step against real processes: streaming, capture, exit codes and stopping."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from tests.support.steps import OWN_USER_KINDS, RecordingContext, running, wait_for

from runwire.domain.models import OutputStream
from runwire.runner.steps import StepResult
from runwire.scenarios.results import Observed

GRACE = 0.5
PY = sys.executable


async def run(params: dict[str, Any], context: RecordingContext | None = None) -> StepResult:
    shell = OWN_USER_KINDS["shell"]
    return await shell.run(
        shell.parse(params, "with"), context or RecordingContext(grace_seconds=GRACE)
    )


def python(source: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(source)]


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


async def test_streams_each_stream_in_order() -> None:
    context = RecordingContext(grace_seconds=GRACE)
    argv = python("""
        import sys
        for i in range(3):
            print(f"out{i}", flush=True)
            print(f"err{i}", file=sys.stderr, flush=True)
    """)
    result = await run({"argv": argv}, context)
    assert result == StepResult(
        output={"exit_code": 0, "stdout": "out0\nout1\nout2\n", "stderr": "err0\nerr1\nerr2\n"},
        exit_code=0,
        observed=Observed(exit_code=0, text="out0\nout1\nout2\n"),
    )
    assert context.text(OutputStream.STDOUT) == "out0\nout1\nout2\n"
    assert context.text(OutputStream.STDERR) == "err0\nerr1\nerr2\n"


async def test_forwards_output_before_a_newline_and_before_exit(tmp_path: Path) -> None:
    context = RecordingContext(grace_seconds=GRACE)
    go = tmp_path / "go"
    argv = python(f"""
        import os, sys, time
        sys.stdout.write("partial"); sys.stdout.flush()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
    """)
    task = asyncio.create_task(run({"argv": argv}, context))
    await wait_for(lambda: context.text(OutputStream.STDOUT) == "partial")
    assert not task.done()
    go.touch()
    assert (await task).output["stdout"] == "partial"


async def test_decodes_a_character_split_across_reads() -> None:
    context = RecordingContext(grace_seconds=GRACE)
    argv = python("""
        import sys, time
        sys.stdout.buffer.write(b"caf\\xc3"); sys.stdout.flush()
        time.sleep(0.05)
        sys.stdout.buffer.write(b"\\xa9\\n"); sys.stdout.flush()
    """)
    result = await run({"argv": argv}, context)
    assert context.text(OutputStream.STDOUT) == result.output["stdout"] == "café\n"


@pytest.mark.parametrize(("script", "code"), [("exit 3", 3), ("kill -TERM $$", -15)])
async def test_any_exit_is_a_completed_run_for_expect_to_judge(script: str, code: int) -> None:
    # Whether it failed is decided by expectations.assess (exit code 0 unless `expect:` says).
    result = await run({"argv": ["sh", "-c", f"echo out; {script}"]})
    assert (result.exit_code, result.error, result.output["exit_code"]) == (code, None, code)
    assert result.observed == Observed(exit_code=code, text="out\n")


async def test_keeps_the_tail_of_long_output() -> None:
    context = RecordingContext(grace_seconds=GRACE)
    result = await run({"argv": python("print('x' * 100_000); print('END')")}, context)
    stdout = result.output["stdout"]
    assert stdout.startswith("…[truncated 34469 bytes]\n")
    assert stdout.endswith("x\nEND\n")
    assert len(stdout.partition("\n")[2]) == 64 * 1024
    assert context.text(OutputStream.STDOUT) == "x" * 100_000 + "\nEND\n"


async def test_env_is_merged_and_cwd_is_used(tmp_path: Path) -> None:
    argv = python("import os; print(os.environ['RW_GREETING'], 'PATH' in os.environ, os.getcwd())")
    result = await run({"argv": argv, "env": {"RW_GREETING": "hello"}, "cwd": str(tmp_path)})
    assert result.output["stdout"] == f"hello True {tmp_path}\n"


async def test_stdin_is_sent_or_empty() -> None:
    assert (await run({"argv": ["cat"], "stdin": "line\n"})).output["stdout"] == "line\n"
    # Without `stdin` the child reads EOF instead of the server's own stdin.
    assert (await run({"argv": ["cat"]})).output["stdout"] == ""


async def test_argv_is_not_interpreted_by_a_shell() -> None:
    result = await run({"argv": ["echo", "$HOME", "a;b", "*"]})
    assert result.output["stdout"] == "$HOME a;b *\n"


async def test_shell_is_opt_in() -> None:
    result = await run({"shell": True, "command": "echo $((1 + 2)) | tr 3 x"})
    assert result.output["stdout"] == "x\n"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"argv": ["/nonexistent/tool"]}, "cannot start: No such file or directory"),
        ({"argv": ["true"], "cwd": "/nonexistent/dir"}, "cannot start: No such file or directory"),
        ({"argv": ["/"]}, "cannot start: Permission denied"),
    ],
)
async def test_cannot_start_is_a_result(params: dict[str, Any], error: str) -> None:
    result = await run(params)
    assert result.error is not None
    assert result.error.startswith(error)
    assert result.exit_code is None
    assert result.observed is None


@needs_proc
async def test_background_children_do_not_keep_the_step_running() -> None:
    context = RecordingContext(grace_seconds=GRACE)
    started = time.monotonic()
    result = await run({"argv": ["sh", "-c", "sleep 30 & echo $!"]}, context)
    assert time.monotonic() - started < 2
    assert result.exit_code == 0
    await wait_for(lambda: not running(int(result.output["stdout"])), seconds=1.0)
    assert (OutputStream.LOG, "killed processes left running in the background") in context.calls


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Short sleeps: a SIGINT that lands in a child between fork and exec is lost to it, and sh
        # runs its trap only once the child it waits for ends.
        (
            ["sh", "-c", "trap 'echo bye; exit 3' INT; echo ready; while :; do sleep 0.1; done"],
            "exited with code 3",
        ),
        (
            python("import time; print('ready', flush=True); time.sleep(30)"),
            "killed by signal SIGINT",
        ),
    ],
)
async def test_stop_lets_a_process_exit_on_sigint(argv: list[str], message: str) -> None:
    # A grace period it cannot run out of on a loaded machine: the log line, not a clock, says
    # the process ended on SIGINT ("killed after a grace period" had it been killed).
    context = RecordingContext(grace_seconds=30)
    task = asyncio.create_task(run({"argv": argv}, context))
    await wait_for(lambda: "ready" in context.text(OutputStream.STDOUT))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (OutputStream.LOG, f"stopped: {message}") in context.calls
    if argv[0] == "sh":  # what the handler printed while stopping still arrives
        assert context.text(OutputStream.STDOUT) == "ready\nbye\n"


@needs_proc
async def test_stop_kills_the_group_and_escaped_descendants_after_grace() -> None:
    context = RecordingContext(grace_seconds=GRACE)
    # The leader and both its children ignore SIGINT and print their pids; one child stays in
    # the process group, the other calls setsid() to escape it.
    child = (
        "import os, signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "sys.argv[1] == 'escape' and os.setsid(); os.write(1, b'%d\\n' % os.getpid()); "
        "time.sleep(60)"
    )
    leader = f"""
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.write(1, b"%d\\n" % os.getpid())  # one write each: lines from 3 processes never mix
        for mode in ("stay", "escape"):
            subprocess.Popen([sys.executable, "-c", {child!r}, mode])
        time.sleep(60)
    """
    task = asyncio.create_task(run({"argv": python(leader)}, context))
    await wait_for(lambda: len(context.text(OutputStream.STDOUT).split()) == 3)
    pids = [int(pid) for pid in context.text(OutputStream.STDOUT).split()]
    assert all(running(pid) for pid in pids)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < GRACE + 1.0
    assert (OutputStream.LOG, f"killed after a grace period of {GRACE:g} s") in context.calls
    await wait_for(lambda: not any(running(pid) for pid in pids), seconds=1.0)


async def test_a_backlogged_execution_stops_reading_until_there_is_room() -> None:
    context = RecordingContext()
    context.backlog.set()  # its events are behind the database from the start
    # 2 MB through a pipe that holds far less: it cannot end while nobody reads.
    argv = ["sh", "-c", "head -c 2000000 /dev/zero | tr '\\0' x; echo; echo done"]
    step = asyncio.ensure_future(
        OWN_USER_KINDS["shell"].run(OWN_USER_KINDS["shell"].parse({"argv": argv}, "w"), context)
    )
    async with asyncio.timeout(10):
        while not context.calls:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    assert not step.done()  # blocked on its pipe, not buffered in the server
    read = len(context.text(OutputStream.STDOUT))
    assert read < 1_000_000
    context.backlog.clear()
    result = await asyncio.wait_for(step, 10)
    assert result.exit_code == 0
    assert context.text(OutputStream.STDOUT).endswith("done\n")
    assert len(context.text(OutputStream.STDOUT)) == 2_000_000 + len("\ndone\n")
