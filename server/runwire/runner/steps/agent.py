"""The `agent` step: run a CLI agent as a process and read its transcript as it streams.

The agent runs exactly as a `shell` command does (commands.py: confined, contained, stopped with
SIGINT, then SIGKILL of its whole tree). Its stdout is read line by line in the step's `format`
(runner/agent_formats): each record becomes typed transcript entries (AGENT_ENTRY events), the
usage it reports is priced and checked against budgets (USAGE events), each tool call is a span
from its call to its result, and lines that are not JSON stay plain output.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from runwire.domain.agents import AgentEntry, EntryType, Usage, UsageTotals
from runwire.domain.clock import utc_now
from runwire.domain.models import OutputStream
from runwire.runner.agent_formats import FORMATS, parse_line
from runwire.runner.spans import CANCELLED, FAILED, SUCCEEDED
from runwire.runner.steps.base import Observed, StepContext, StepResult
from runwire.runner.steps.commands import Command, ProcessKind, run_command
from runwire.runner.steps.params import Fields

MAX_LINE_CHARS = 8 * 1024 * 1024
"""A line longer than this is not read as a record: it goes to the output as it is."""


@dataclass(frozen=True, slots=True)
class AgentParams:
    """The agent's argv (no shell), how its stdout is written, and what a shell step also has."""

    command: tuple[str, ...]
    format: str
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    stdin: str | None = None
    network: bool = False
    # The model to price tokens by when the agent names none and reports no cost (Codex).
    model: str | None = None


class AgentStep(ProcessKind):
    """Run a CLI agent under a reaper; its stdout parsed into entries, usage and tool spans."""

    name = "agent"

    def idempotent(self, params: AgentParams) -> bool:
        return False  # an agent edits files and runs commands

    def parse(self, params: Any, path: str) -> AgentParams:
        fields = Fields(
            params, path, {"command", "format", "env", "cwd", "stdin", "network", "model"}
        )
        fields.require("command", "format")
        command = fields.strings("command")
        if fields.values.get("command") == []:
            fields.error("command", "must not be empty")
        format_name = fields.string("format")
        if format_name is not None and format_name not in FORMATS:
            fields.error("format", f"expected one of: {', '.join(FORMATS)}")
        env = fields.string_map("env")
        cwd, stdin, model = fields.string("cwd"), fields.string("stdin"), fields.string("model")
        if cwd and not os.path.isabs(cwd) and ".." in PurePosixPath(cwd).parts:
            fields.error("cwd", "a relative cwd is inside the step's directory: no '..'")
        network = fields.boolean("network", False)
        fields.check()
        assert format_name is not None
        return AgentParams(
            command, format_name, env or None, cwd, stdin, bool(network), model or None
        )

    async def run(self, params: AgentParams, context: StepContext) -> StepResult:
        transcript = Transcript(params.format, context, params.model)
        command = Command(params.command, params.env, params.cwd, params.stdin, params.network)
        try:
            finished = await run_command(self.confinement, command, context, transcript.feed)
        finally:
            transcript.unanswered()
        if isinstance(finished, StepResult):
            return finished
        transcript.close()
        return transcript.step_result(finished.exit_code, finished.stderr)


class Transcript:
    """An agent's stdout as it arrives: split into lines, parsed, reported to the context."""

    def __init__(self, format_name: str, context: StepContext, model: str | None) -> None:
        self.format = format_name
        self.context = context
        self.model = model
        self.session_model: str | None = None
        self.session_id: str | None = None
        self.result: AgentEntry | None = None
        self.last_text: str | None = None
        self.unknown_lines = 0
        self.totals = UsageTotals()
        self._pending: list[str] = []
        self._pending_chars = 0
        self._overlong = False  # the rest of a line too long to be a record is plain output
        self._calls: dict[str, tuple[str | None, datetime]] = {}

    def feed(self, text: str) -> None:
        """Take a piece of decoded stdout; every complete line in it is read now."""
        *lines, rest = text.split("\n")
        for line in lines:
            self._pending.append(line)
            whole, self._pending, self._pending_chars = "".join(self._pending), [], 0
            if self._overlong:
                self._overlong = False
                self.context.output(OutputStream.STDOUT, whole + "\n")
            else:
                self._line(whole)
        if rest:
            if self._overlong:
                self.context.output(OutputStream.STDOUT, rest)
                return
            self._pending.append(rest)
            self._pending_chars += len(rest)
            if self._pending_chars > MAX_LINE_CHARS:
                self.unknown_lines += 1
                self.context.output(OutputStream.STDOUT, "".join(self._pending))
                self._pending, self._pending_chars, self._overlong = [], 0, True

    def close(self) -> None:
        """Read a last line that had no newline."""
        if self._pending and not self._overlong:
            self._line("".join(self._pending))
        self._pending, self._pending_chars = [], 0

    def _line(self, line: str) -> None:
        line = line.removesuffix("\r")
        parsed = parse_line(self.format, line)
        if parsed is None:
            self.context.output(OutputStream.STDOUT, line + "\n")
            return
        if parsed.unknown:
            self.unknown_lines += 1
        if parsed.output:
            self.context.output(OutputStream.STDOUT, parsed.output)
        for entry in parsed.entries:
            self._entry(entry)
        if parsed.usage is not None:
            self._usage(parsed.usage)

    def _entry(self, entry: AgentEntry) -> None:
        answered: tuple[str | None, datetime] | None = None
        if entry.type is EntryType.INIT:
            self.session_id = _text(entry.data.get("session_id")) or self.session_id
            self.session_model = _text(entry.data.get("model")) or self.session_model
        elif entry.type is EntryType.TOOL_CALL and entry.call_id is not None:
            if entry.call_id in self._calls:
                return  # a format that repeats the call with its result (Codex)
            self._calls[entry.call_id] = (entry.tool, utc_now())
        elif entry.type is EntryType.TOOL_RESULT and entry.call_id is not None:
            answered = self._calls.pop(entry.call_id, None)
            if answered is not None and entry.tool is None:
                entry = dataclasses.replace(entry, tool=answered[0])
        elif entry.type is EntryType.ASSISTANT_TEXT:
            if not entry.is_error and not entry.data.get("reasoning") and entry.text:
                self.last_text = entry.text
        elif entry.type is EntryType.RESULT:
            # The last result decides: an agent may report an error it then recovers from.
            self.result = entry
            self.session_id = _text(entry.data.get("session_id")) or self.session_id
        self.context.entry(entry)
        if answered is not None and entry.call_id is not None:
            status = FAILED if entry.is_error else SUCCEEDED
            self._span(entry.call_id, answered[0], answered[1], status)

    def _usage(self, usage: Usage) -> None:
        if usage.model is None:
            usage = dataclasses.replace(usage, model=self.session_model or self.model)
        # May cross a budget: the runner then cancels this step, which stops the agent.
        self.totals = self.totals.add(self.context.usage(usage))

    def _span(self, call_id: str, tool: str | None, started: datetime, status: str) -> None:
        attributes = {"tool": tool, "call_id": call_id}
        self.context.span(tool or "tool", "tool", started, utc_now(), status, attributes)

    def unanswered(self) -> None:
        """Close the span of each call that got no result (the agent ended or was stopped)."""
        for call_id, (tool, started) in self._calls.items():
            self._span(call_id, tool, started, CANCELLED)
        self._calls.clear()

    def step_result(self, exit_code: int, stderr: str) -> StepResult:
        result = self.result
        is_error = result is not None and result.is_error
        text = result.text if result is not None else None
        if text is None and not is_error:
            text = self.last_text  # Codex's result has no text of its own: its last message
        data = result.data if result is not None else {}
        outcome, turns = _text(data.get("outcome")), data.get("turns")
        usage = None
        if self.totals.calls:
            usage = {
                "input": self.totals.input,
                "output": self.totals.output,
                "cached": self.totals.cached,
                "reasoning": self.totals.reasoning,
            }
        output = {
            "result": text,
            "is_error": is_error,
            "outcome": outcome,
            "turns": turns,
            "session_id": self.session_id,
            "usage": usage,
            "cost_usd": self.totals.cost_known if self.totals.calls else None,
            "unknown_lines": self.unknown_lines,
            "exit_code": exit_code,
            "stderr": stderr,
        }
        error = None
        if is_error:
            # The agent's own words; when it gave none, what it said happened.
            said = f": {text}" if text else (f" after {turns} turns" if turns else "")
            label = outcome if outcome and outcome != "success" else "error"
            error = f"agent failed: {label}{said}"
        return StepResult(
            output=output,
            error=error,
            exit_code=exit_code,
            attributes={"agent_format": self.format, "unknown_lines": self.unknown_lines},
            observed=Observed(exit_code=exit_code, text=text or ""),
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
