"""Output budgets: how much a step attempt (and an execution) may print before output is dropped.

Three budgets, each off when 0: bytes per step attempt, bytes per run of an execution (all its
step attempts together), and a line rate per step attempt (a token bucket: `lines_per_second`
sustained, `line_burst` at once). Past a byte budget the rest of the attempt's output is dropped;
past the rate, lines are dropped until the bucket has refilled to half the burst (so a flood
switches between showing and dropping at most once per `line_burst / 2 / lines_per_second` s).

Dropped output is still read and counted — the command's pipe is drained, so it never blocks on
a full pipe and its exit code still decides the step. A visible OUTPUT_TRUNCATED event marks
where dropping starts (one per byte budget, one per rate episode), and at the attempt's end one
more (`final`) gives the totals dropped. The runner's own LOG lines are not budgeted: they are
few, and they say why a step ended.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runwire.domain.models import OutputLimit, OutputStream
from runwire.settings import Settings

_MiB = 1024 * 1024

# The artifact a truncated attempt's whole output is kept as, with RUNWIRE_OUTPUT_ARTIFACT.
OUTPUT_ARTIFACT = "output.log"
# Room kept at the end of a spool for the line saying how much did not fit.
_NOTE_BYTES = 200


@dataclass(frozen=True, slots=True)
class OutputLimits:
    """The budgets; 0 turns one off."""

    step_bytes: int = 10 * _MiB
    execution_bytes: int = 50 * _MiB
    lines_per_second: float = 5000.0
    line_burst: int = 50_000
    # Keep a truncated attempt's whole output as its artifact OUTPUT_ARTIFACT (OutputSpool).
    save_artifact: bool = False

    @classmethod
    def of(cls, settings: Settings) -> OutputLimits:
        return cls(
            settings.output_step_bytes,
            settings.output_execution_bytes,
            settings.output_lines_per_second,
            settings.output_line_burst,
            settings.output_artifact,
        )


@dataclass(slots=True)
class ExecutionOutput:
    """What one run of an execution printed, over all its step attempts."""

    kept_bytes: int = 0


class OutputBudget:
    """One step attempt's budget: passes what fits on to `write`, counts and reports the rest."""

    def __init__(
        self,
        limits: OutputLimits,
        execution: ExecutionOutput,
        write: Callable[[OutputStream, str], None],
        truncated: Callable[[Mapping[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._execution = execution
        self._write = write
        self._truncated = truncated
        self._clock = clock
        self._tokens = float(limits.line_burst)
        self._refilled_at = clock()
        self._rate_dropping = False
        self._full: OutputLimit | None = None  # the byte budget that ran out
        self.kept_bytes = 0
        self.dropped_bytes = 0
        self.dropped_lines = 0
        self._reasons: list[OutputLimit] = []

    def write(self, stream: OutputStream, text: str) -> None:
        """Pass on the part of `text` within the budgets; announce where dropping starts."""
        if stream is OutputStream.LOG or not text:
            if text:
                self._write(stream, text)
            return
        if self._full is not None:
            self._drop(text)
            return
        kept, reason = self._within_rate(text)
        kept, full = self._within_bytes(kept)
        if kept:
            size = _size(kept)
            self.kept_bytes += size
            self._execution.kept_bytes += size
            self._write(stream, kept)
        if len(kept) < len(text):
            self._drop(text[len(kept) :])
        if full is not None:
            self._full = full
            self._announce(full)
        elif reason is not None:
            self._announce(reason)

    def close(self) -> None:
        """The attempt ended: report the totals dropped, if anything was."""
        if self.dropped_bytes:
            self._truncated(self._data(self._reasons[-1], final=True))

    def _within_rate(self, text: str) -> tuple[str, OutputLimit | None]:
        """The lines of `text` the rate allows; the reason if dropping starts here."""
        limits = self._limits
        if limits.lines_per_second <= 0 or limits.line_burst <= 0:
            return text, None
        now = self._clock()
        self._tokens = min(
            float(limits.line_burst),
            self._tokens + (now - self._refilled_at) * limits.lines_per_second,
        )
        self._refilled_at = now
        if self._rate_dropping:
            if self._tokens < limits.line_burst / 2:
                return "", None
            self._rate_dropping = False
        lines = text.count("\n")
        if lines <= self._tokens:
            self._tokens -= lines
            return text, None
        # Keep the first whole lines the bucket holds; drop from there.
        allowed = int(self._tokens)
        cut = -1
        for _ in range(allowed):
            cut = text.index("\n", cut + 1)
        self._tokens -= allowed
        self._rate_dropping = True
        return text[: cut + 1], OutputLimit.LINE_RATE

    def _within_bytes(self, text: str) -> tuple[str, OutputLimit | None]:
        """The start of `text` that fits the byte budgets; the budget that ran out, if one did."""
        limits = self._limits
        room, which = None, None
        if limits.step_bytes > 0:
            room, which = limits.step_bytes - self.kept_bytes, OutputLimit.STEP_BYTES
        if limits.execution_bytes > 0:
            left = limits.execution_bytes - self._execution.kept_bytes
            if room is None or left < room:
                room, which = left, OutputLimit.EXECUTION_BYTES
        if room is None or _size(text) <= room:
            return text, None
        head = _cut(text, max(room, 0))
        # End on a whole line where there is one, so the last line shown is not cut in half.
        newline = head.rfind("\n")
        return (head[: newline + 1] if newline >= 0 else head), which

    def _drop(self, text: str) -> None:
        self.dropped_bytes += _size(text)
        self.dropped_lines += text.count("\n")

    def _announce(self, reason: OutputLimit) -> None:
        self._reasons.append(reason)
        self._truncated(self._data(reason, final=False))

    def _data(self, reason: OutputLimit, *, final: bool) -> dict[str, Any]:
        allowed = {
            OutputLimit.STEP_BYTES: self._limits.step_bytes,
            OutputLimit.EXECUTION_BYTES: self._limits.execution_bytes,
            OutputLimit.LINE_RATE: self._limits.lines_per_second,
        }[reason]
        what = {
            OutputLimit.STEP_BYTES: f"over the step's budget of {allowed:,} bytes",
            OutputLimit.EXECUTION_BYTES: f"over the execution's budget of {allowed:,} bytes",
            OutputLimit.LINE_RATE: f"faster than {allowed:,g} lines/s",
        }[reason]
        message = (
            f"output truncated: {self.dropped_bytes:,} bytes ({self.dropped_lines:,} lines)"
            f" dropped in all; last: {what}"
            if final
            else f"output truncated: {what}; dropping output"
        )
        return {
            "limit": reason.value,
            "allowed": allowed,
            "dropped_bytes": self.dropped_bytes,
            "dropped_lines": self.dropped_lines,
            "final": final,
            "message": message,
        }


class OutputSpool:
    """A step attempt's whole output, stdout and stderr as they came (already redacted), in a
    temporary file on disk rather than in memory, up to `limit` bytes; the rest is counted."""

    def __init__(self, limit: int) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._room = max(limit - _NOTE_BYTES, 0)
        self.kept_bytes = 0
        self.over_bytes = 0

    def write(self, stream: OutputStream, text: str) -> None:
        if stream is OutputStream.LOG or not text:
            return
        data = text.encode("utf-8", "replace")
        room = self._room - self.kept_bytes
        if len(data) > room:
            # Whole characters only: the file stays valid UTF-8.
            data = data[: max(room, 0)].decode("utf-8", "ignore").encode()
            self.over_bytes += len(text.encode("utf-8", "replace")) - len(data)
        if data:
            self._file.write(data)
            self.kept_bytes += len(data)

    def content(self) -> bytes:
        """What was kept, with a last line saying how much did not fit (blocking: a thread's)."""
        self._file.seek(0)
        content = self._file.read()
        if self.over_bytes:
            content += (
                f"\n[runwire: {self.over_bytes:,} more bytes not kept:"
                " over RUNWIRE_ARTIFACT_MAX_BYTES]\n"
            ).encode()
        return content

    def close(self) -> None:
        self._file.close()


def _size(text: str) -> int:
    """UTF-8 bytes of `text` (a str of ASCII only knows its length without encoding)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _cut(text: str, size: int) -> str:
    """The longest start of `text` of at most `size` UTF-8 bytes, whole characters only."""
    if text.isascii():
        return text[:size]
    return text.encode("utf-8", "surrogatepass")[:size].decode("utf-8", "ignore")
