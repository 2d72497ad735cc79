"""The report channel of a real shell step: records written by sh and python to descriptor 3.

The step kind is driven directly (real processes, the real reaper and confinement) with a
recording context; what the runner makes of the records (events, prices, budgets, trace) is in
test_report_channel_runner.py and tests/api/test_report_channel_trace.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.steps import RecordingContext

from runwire.domain.agents import AgentEntry, EntryType, Usage
from runwire.domain.models import OutputStream
from runwire.runner.steps import ShellStep, StepResult
from runwire.runner.steps.confinement import Confinement
from runwire.settings import Settings

OWN_USER = Settings(step_user="")


async def run(
    command: str, settings: Settings = OWN_USER, context: RecordingContext | None = None
) -> tuple[StepResult, RecordingContext]:
    shell = ShellStep(Confinement.from_settings(settings))
    context = context or RecordingContext()
    result = await shell.run(shell.parse({"shell": True, "command": command}, "with"), context)
    return result, context


def logs(context: RecordingContext) -> list[str]:
    return [text for stream, text in context.calls if stream is OutputStream.LOG]


PY = sys.executable


async def test_sh_and_python_report_usage_entries_spans_and_outputs() -> None:
    script = f"""
printf '%s\\n' '{{"type":"usage","model":"runwire-fake-1",'\\
'"input_tokens":1000,"output_tokens":500}}' >&3
printf '{{"type":"output","name":"version","value":"1.2.3"}}\\n' >&"$RUNWIRE_REPORT_FD"
echo '{{"type":"entry","entry":"TOOL_CALL","tool":"grep","call_id":"c1",'\\
'"data":{{"input":{{"q":"x"}}}}}}' >/dev/fd/3
{PY} -c '
import json, os
fd = int(os.environ["RUNWIRE_REPORT_FD"])
with open(fd, "w", closefd=False) as report:
    for record in (
        {{"type": "span", "name": "child", "kind": "tool", "started_at": 100, "finished_at": 101,
          "id": "c", "parent_id": "p"}},
        {{"type": "span", "name": "parent", "kind": "agent", "started_at": 99,
          "finished_at": "1970-01-01T00:01:42Z", "id": "p", "status": "failed"}},
        {{"type": "output", "name": "files", "value": ["a", "b"]}},
        {{"type": "usage", "input_tokens": 3, "output_tokens": 4, "cost_usd": 0.5}},
    ):
        report.write(json.dumps(record) + "\\n")
'
echo done
"""
    result, context = await run(script)
    assert result.error is None, context.calls
    assert result.output == {
        "exit_code": 0,
        "stdout": "done\n",
        "stderr": "",
        "version": "1.2.3",
        "files": ["a", "b"],
    }
    assert [priced.usage for priced in context.usages] == [
        Usage("runwire-fake-1", 1000, 500),
        Usage(None, 3, 4, cost_usd=0.5),
    ]
    assert context.entries == [
        AgentEntry(EntryType.TOOL_CALL, tool="grep", call_id="c1", data={"input": {"q": "x"}})
    ]
    child, parent = context.spans
    assert (child["name"], parent["name"]) == ("child", "parent")
    # The reporter's ids are replaced by ones unique in the execution, consistently: the child
    # names its parent before the parent is reported.
    assert child["parent_id"] == parent["span_id"] != "p"
    assert parent["parent_id"] is None
    assert (parent["status"], parent["kind"]) == ("FAILED", "agent")
    assert parent["finished_at"] == "1970-01-01T00:01:42+00:00"
    assert logs(context) == []


async def test_a_process_that_never_writes_has_the_plain_shell_output() -> None:
    result, context = await run('echo quiet; test "$RUNWIRE_REPORT_FD" = 3')
    assert result.output == {"exit_code": 0, "stdout": "quiet\n", "stderr": ""}
    assert (context.usages, context.entries, context.spans, logs(context)) == ([], [], [], [])


async def test_garbage_is_counted_and_reported_once_and_good_records_still_count() -> None:
    script = f"""
{{
  echo 'not json'
  echo '[1, 2]'
  echo '{{"type":"metrics"}}'
  echo '{{"type":"usage","input_tokens":-5,"output_tokens":1}}'
  echo '{{"type":"output","name":"stdout","value":"mine"}}'
  echo
  {PY} -c 'print("{{\\"type\\":\\"output\\",\\"name\\":\\"big\\",\\"value\\":\\"" +
"x" * 70000 + "\\"}}")'
  echo '{{"type":"output","name":"after","value":1}}'
  printf '%s' '{{"type":"output","name":"last","value":2}}'
}} >&3
"""
    result, context = await run(script)
    assert result.error is None
    assert result.exit_code == 0
    assert result.output["after"] == 1
    assert result.output["last"] == 2  # a last record without its newline
    assert result.output["stdout"] == ""  # the step's own key was not taken
    assert "big" not in result.output
    assert logs(context) == [
        "report channel: ignored 6 of 8 records (2 not JSON, 1 unknown type, 2 bad field,"
        " 1 too large); the first, record 1: not JSON: JSON is malformed: invalid character"
        " (byte 4)"
    ]


async def test_named_outputs_are_bounded_in_all() -> None:
    # Four values of 60,000 bytes fit in 256 KiB; the fifth does not, and a name reported
    # again replaces its value rather than adding to it.
    script = f"""{PY} -c '
import json, os
for name in ("a", "b", "c", "d", "a", "e"):
    record = {{"type": "output", "name": name, "value": "v" * 60000}}
    os.write(3, json.dumps(record).encode() + b"\\n")
'"""
    result, context = await run(script)
    assert sorted(result.output) == ["a", "b", "c", "d", "exit_code", "stderr", "stdout"]
    (log,) = logs(context)
    assert log.startswith("report channel: ignored 1 of 6 records (1 bad field); the first,")
    assert "'e' would make the named outputs 300,010 bytes, over the 262,144-byte limit" in log


async def test_the_process_cannot_read_through_the_descriptor() -> None:
    # A write end: reading it fails. (Reopening /dev/fd/3 to read is refused to all but root,
    # checked as the step user below; a step running as root can read anything anyway.)
    result, _ = await run("cat <&3 && echo read || echo cannot-read")
    assert result.output["stdout"] == "cannot-read\n"


@pytest.fixture
def open_dirs() -> Iterator[Path]:
    """A base for step and data directories that the step user can reach (tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="runwire-report-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _sandbox_or_why_not() -> str | None:
    try:
        Confinement.from_settings(Settings(step_user="", step_sandbox="bubblewrap"))
    except ValueError as error:
        return str(error)
    return None


@pytest.mark.parametrize(
    "confined",
    [
        pytest.param(
            {"step_user": "nobody"},
            marks=pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root"),
            id="step-user",
        ),
        pytest.param(
            {"step_sandbox": "bubblewrap"},
            marks=pytest.mark.skipif(
                _sandbox_or_why_not() is not None, reason=f"no sandbox: {_sandbox_or_why_not()}"
            ),
            id="sandbox",
        ),
    ],
)
async def test_the_descriptor_reaches_a_confined_command(
    confined: dict[str, Any], open_dirs: Path
) -> None:
    # As another user (setpriv and the environment trampoline) and inside bubblewrap.
    settings = Settings(step_dir=open_dirs / "steps", data_dir=open_dirs / "data", **confined)
    script = """
printf '{"type":"output","name":"fd","value":"%s"}\\n' "$RUNWIRE_REPORT_FD" >&3
echo '{"type":"output","name":"path","value":"ok"}' >/dev/fd/3
cat <&3 || echo cannot-read
timeout 5 cat /dev/fd/3 </dev/null || echo cannot-reopen
"""
    result, context = await run(script, settings)
    assert result.error is None, context.calls
    assert (result.output.get("fd"), result.output.get("path")) == ("3", "ok"), context.calls
    assert result.output["stdout"] == "cannot-read\ncannot-reopen\n"


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_no_descriptor_outlives_its_step() -> None:
    await run("echo warm-up >&3")  # lazily opened once per process (the loop's, the reaper's)
    before = open_descriptors()
    await run('echo \'{"type":"output","name":"a","value":1}\' >&3')
    await run('(sleep 30 >&3 &) ; echo \'{"type":"nope"}\' >&3')  # a background writer
    cannot_start = ShellStep(Confinement.from_settings(OWN_USER))
    failed = await cannot_start.run(
        cannot_start.parse({"argv": ["/nonexistent/program"]}, "with"), RecordingContext()
    )
    assert failed.error is not None
    assert failed.error.startswith("cannot start")
    # Stopped while its command holds the descriptor and writes to it.
    context = RecordingContext(grace_seconds=0.2)
    shell = ShellStep(Confinement.from_settings(OWN_USER))
    params = shell.parse(
        {"shell": True, "command": "echo started; while :; do echo '{}' >&3; sleep 0.01; done"},
        "with",
    )
    task = asyncio.create_task(shell.run(params, context))
    async with asyncio.timeout(10):
        while "started\n" not in context.text(OutputStream.STDOUT):
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert open_descriptors() == before
