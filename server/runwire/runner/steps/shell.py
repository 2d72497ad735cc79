"""The `shell` step: run a command as a subprocess and stream its output."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from runwire.runner.steps.base import Observed, StepContext, StepResult
from runwire.runner.steps.commands import Command, ProcessKind, run_command
from runwire.runner.steps.params import Fields


@dataclass(frozen=True, slots=True)
class ShellParams:
    """What to run: `argv` directly, or `command` through `/bin/sh -c` when `shell` is set."""

    argv: tuple[str, ...]
    shell: bool = False
    command: str | None = None
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    stdin: str | None = None
    # Whether a sandboxed step may use the network (RUNWIRE_STEP_SANDBOX); ignored without one.
    network: bool = False


class ShellStep(ProcessKind):
    """Run a command under a reaper; on stop, SIGINT its group, then SIGKILL all it started."""

    name = "shell"

    def idempotent(self, params: ShellParams) -> bool:
        return False  # a command may change the world; `on_runner_lost: retry` says it may not

    def parse(self, params: Any, path: str) -> ShellParams:
        fields = Fields(
            params, path, {"argv", "shell", "command", "env", "cwd", "stdin", "network"}
        )
        shell = fields.boolean("shell", False)
        command = fields.string("command")
        argv = fields.strings("argv")
        if shell:
            fields.require("command")
            if fields.has("argv"):
                fields.error("argv", "not allowed when shell is true; use command")
        elif shell is not None:
            fields.require("argv")
            if fields.has("command"):
                fields.error("command", "only allowed when shell is true")
            if fields.values.get("argv") == []:
                fields.error("argv", "must not be empty")
        env = fields.string_map("env")
        cwd, stdin = fields.string("cwd"), fields.string("stdin")
        if cwd and not os.path.isabs(cwd) and ".." in PurePosixPath(cwd).parts:
            fields.error("cwd", "a relative cwd is inside the step's directory: no '..'")
        network = fields.boolean("network", False)
        fields.check()
        return ShellParams(argv, bool(shell), command, env or None, cwd, stdin, bool(network))

    async def run(self, params: ShellParams, context: StepContext) -> StepResult:
        argv = ("/bin/sh", "-c", params.command or "") if params.shell else params.argv
        command = Command(argv, params.env, params.cwd, params.stdin, params.network)
        finished = await run_command(self.confinement, command, context)
        if isinstance(finished, StepResult):
            return finished
        # Any exit code is a completed run: whether it passed is for the step's `expect:`
        # (exit_code 0 unless it says otherwise) to decide.
        code = finished.exit_code
        return StepResult(
            output={"exit_code": code, "stdout": finished.stdout, "stderr": finished.stderr},
            exit_code=code,
            observed=Observed(exit_code=code, text=finished.stdout),
        )
