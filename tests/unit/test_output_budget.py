"""Output budgets: what fits is passed on, the rest is counted and announced once per budget."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runwire.domain.models import OutputLimit, OutputStream
from runwire.runner.output_budget import ExecutionOutput, OutputBudget, OutputLimits, OutputSpool

OUT, LOG = OutputStream.STDOUT, OutputStream.LOG


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Recorder:
    def __init__(self) -> None:
        self.written: list[str] = []
        self.marks: list[Mapping[str, Any]] = []

    def budget(
        self,
        limits: OutputLimits,
        execution: ExecutionOutput | None = None,
        clock: _Clock | None = None,
    ) -> OutputBudget:
        return OutputBudget(
            limits,
            execution or ExecutionOutput(),
            lambda stream, text: self.written.append(text),
            self.marks.append,
            clock or _Clock(),
        )


def test_past_the_step_bytes_output_is_dropped_at_a_line_end_and_announced_once() -> None:
    seen = _Recorder()
    budget = seen.budget(OutputLimits(step_bytes=25, execution_bytes=0, lines_per_second=0))
    budget.write(OUT, "0123456789\n")
    budget.write(OUT, "0123456789\n0123456789\n")  # crosses 25 bytes in its second line
    budget.write(OUT, "more\n" * 100)
    budget.write(LOG, "killed\n")  # the runner's own lines are never budgeted
    budget.close()
    assert seen.written == ["0123456789\n", "0123456789\n", "killed\n"]
    first, final = seen.marks
    assert first["limit"] == OutputLimit.STEP_BYTES
    assert first["final"] is False
    assert first["allowed"] == 25
    assert (final["final"], final["dropped_bytes"], final["dropped_lines"]) == (True, 511, 101)
    assert "511 bytes (101 lines) dropped" in final["message"]


def test_the_execution_budget_is_shared_by_its_steps() -> None:
    seen = _Recorder()
    execution = ExecutionOutput()
    limits = OutputLimits(step_bytes=0, execution_bytes=10, lines_per_second=0)
    seen.budget(limits, execution).write(OUT, "abcdef\n")
    second = seen.budget(limits, execution)
    second.write(OUT, "ghijkl\n")
    second.close()
    # No whole line of the second fits in the 3 bytes left: a line start is better than nothing.
    assert seen.written == ["abcdef\n", "ghi"]
    assert [m["limit"] for m in seen.marks] == [OutputLimit.EXECUTION_BYTES] * 2
    assert seen.marks[-1]["dropped_bytes"] == 4


def test_a_cut_never_splits_a_character() -> None:
    seen = _Recorder()
    budget = seen.budget(OutputLimits(step_bytes=5, execution_bytes=0, lines_per_second=0))
    budget.write(OUT, "ééé")  # 6 bytes, no line break: cut at whole characters
    assert seen.written == ["éé"]
    assert budget.dropped_bytes == 2


def test_a_line_flood_is_dropped_past_the_burst_and_shown_again_once_refilled() -> None:
    seen = _Recorder()
    clock = _Clock()
    limits = OutputLimits(step_bytes=0, execution_bytes=0, lines_per_second=10, line_burst=4)
    budget = seen.budget(limits, clock=clock)
    budget.write(OUT, "a\nb\nc\nd\ne\nf\n")  # 6 lines at once: the burst of 4 passes
    assert seen.written == ["a\nb\nc\nd\n"]
    clock.now = 0.1  # one line refilled: not yet half the burst, still dropping
    budget.write(OUT, "g\n")
    clock.now = 0.3  # three refilled
    budget.write(OUT, "h\ni\n")
    budget.write(OUT, "j\nk\n")  # over again: a second episode
    budget.close()
    assert seen.written == ["a\nb\nc\nd\n", "h\ni\n", "j\n"]
    assert [(m["limit"], m["final"]) for m in seen.marks] == [
        (OutputLimit.LINE_RATE, False),
        (OutputLimit.LINE_RATE, False),
        (OutputLimit.LINE_RATE, True),
    ]
    assert (budget.dropped_lines, budget.dropped_bytes) == (4, 8)


def test_nothing_dropped_reports_nothing() -> None:
    seen = _Recorder()
    budget = seen.budget(OutputLimits())
    budget.write(OUT, "hello\n" * 1000)
    budget.close()
    assert seen.marks == []
    assert "".join(seen.written) == "hello\n" * 1000


def test_a_spool_keeps_output_up_to_its_limit_and_says_how_much_more_came() -> None:
    spool = OutputSpool(1000)  # 800 bytes of room: 200 are kept for the last line
    try:
        spool.write(OUT, "a" * 500)
        spool.write(LOG, "the runner's own line is not output\n")
        spool.write(OutputStream.STDERR, "é" * 200)  # 400 bytes: 300 fit
        spool.write(OUT, "b" * 50)
        content = spool.content()
    finally:
        spool.close()
    assert (spool.kept_bytes, spool.over_bytes) == (800, 150)
    assert content.startswith(b"a" * 500 + "é".encode() * 150)
    assert content.endswith(
        b"\n[runwire: 150 more bytes not kept: over RUNWIRE_ARTIFACT_MAX_BYTES]\n"
    )


def test_a_spool_cuts_between_characters() -> None:
    spool = OutputSpool(203)  # 3 bytes of room: one 2-byte character fits, not two
    try:
        spool.write(OUT, "éé")
        content = spool.content()
    finally:
        spool.close()
    assert (spool.kept_bytes, spool.over_bytes) == (2, 2)
    assert content.decode().startswith("é\n[runwire: 2 more bytes")
