"""What a suite run's executions add up to: per case, pass rate over its repeats, durations,
usage and failures; per run, progress and counts. Pure functions over what the store read."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from runwire.domain.agents import UsageTotals
from runwire.domain.models import (
    CallFigures,
    RepeatOutcome,
    StepFailure,
    SuiteRun,
    SuiteRunCase,
    SuiteRunTotals,
)


class CaseStatus(StrEnum):
    """Where one case of a run stands, over its repeats that have ended."""

    PENDING = "PENDING"  # no repeat has ended yet
    PASSED = "PASSED"  # every ended repeat passed
    FAILED = "FAILED"  # no ended repeat passed
    FLAKY = "FLAKY"  # some passed, some did not


@dataclass(frozen=True, slots=True)
class RepeatResult:
    """One repeat of a case: the latest attempt's execution, and whether it passed."""

    repeat: int
    attempt: int
    execution_id: str
    status: str
    ended: bool
    passed: bool
    duration_ms: int | None
    failures: tuple[StepFailure, ...] = ()


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    scenario: str | None
    expected_status: str
    repeats: tuple[RepeatResult, ...]
    usage: UsageTotals = field(default_factory=UsageTotals)
    # What its `call` steps measured over its repeats (empty for cases that place no call).
    turn_latencies_ms: tuple[float, ...] = ()
    confidences: tuple[float, ...] = ()

    @property
    def turn_latency_p50_ms(self) -> float | None:
        latencies = self.turn_latencies_ms
        return float(statistics.median(latencies)) if latencies else None

    @property
    def confidence_mean(self) -> float | None:
        return statistics.fmean(self.confidences) if self.confidences else None

    @property
    def ended(self) -> int:
        return sum(repeat.ended for repeat in self.repeats)

    @property
    def passed(self) -> int:
        return sum(repeat.passed for repeat in self.repeats)

    @property
    def failed(self) -> int:
        return self.ended - self.passed

    @property
    def pending(self) -> int:
        return len(self.repeats) - self.ended

    @property
    def pass_rate(self) -> float | None:
        """Passed over ended repeats; None until one has ended."""
        return self.passed / self.ended if self.ended else None

    @property
    def status(self) -> CaseStatus:
        rate = self.pass_rate
        if rate is None:
            return CaseStatus.PENDING
        if rate == 1:
            return CaseStatus.PASSED
        return CaseStatus.FAILED if rate == 0 else CaseStatus.FLAKY

    @property
    def durations(self) -> list[int]:
        return [r.duration_ms for r in self.repeats if r.ended and r.duration_ms is not None]

    @property
    def duration_p50_ms(self) -> float | None:
        durations = self.durations
        return float(statistics.median(durations)) if durations else None

    @property
    def duration_max_ms(self) -> int | None:
        return max(self.durations, default=None)

    @property
    def failures(self) -> tuple[StepFailure, ...]:
        """The failed step attempts of the repeats that did not pass."""
        return tuple(f for r in self.repeats if r.ended and not r.passed for f in r.failures)


@dataclass(frozen=True, slots=True)
class SuiteRunResult:
    run: SuiteRun
    cases: tuple[CaseResult, ...]

    @property
    def total(self) -> int:
        """Executions the run stands for: one per case and repeat (retries replace, not add)."""
        return sum(len(case.repeats) for case in self.cases)

    @property
    def ended(self) -> int:
        return sum(case.ended for case in self.cases)

    @property
    def progress(self) -> float:
        return self.ended / self.total if self.total else 1.0

    @property
    def complete(self) -> bool:
        return self.ended == self.total

    def count(self, status: CaseStatus) -> int:
        return sum(case.status is status for case in self.cases)

    @property
    def pass_rate(self) -> float | None:
        """Passed over ended repeats, over every case."""
        ended = self.ended
        return sum(case.passed for case in self.cases) / ended if ended else None

    @property
    def usage(self) -> UsageTotals:
        total = UsageTotals()
        for case in self.cases:
            total = total.plus(case.usage)
        return total

    @property
    def duration_p50_ms(self) -> float | None:
        durations = [d for case in self.cases for d in case.durations]
        return float(statistics.median(durations)) if durations else None

    def case(self, name: str) -> CaseResult | None:
        return next((case for case in self.cases if case.name == name), None)


def summarize(
    run: SuiteRun,
    outcomes: Iterable[RepeatOutcome],
    failures: Iterable[StepFailure],
    call_figures: Iterable[CallFigures] = (),
) -> SuiteRunResult:
    """The run's result from its executions as they stand; the latest attempt of each repeat
    counts (retryFailed adds attempts)."""
    failed_steps: dict[str, list[StepFailure]] = {}
    for failure in failures:
        failed_steps.setdefault(failure.execution_id, []).append(failure)
    calls: dict[str, list[CallFigures]] = {}
    for figures in call_figures:
        calls.setdefault(figures.execution_id, []).append(figures)
    latest: dict[tuple[int, int], RepeatOutcome] = {}
    for outcome in outcomes:
        key = (outcome.member.case_index, outcome.member.repeat)
        if key not in latest or outcome.member.attempt > latest[key].member.attempt:
            latest[key] = outcome
    cases = []
    for index, case in enumerate(run.cases):
        chosen = [latest[(index, r)] for r in range(1, run.repeat + 1) if (index, r) in latest]
        cases.append(_case_result(case, chosen, failed_steps, calls))
    return SuiteRunResult(run, tuple(cases))


def _case_result(
    case: SuiteRunCase,
    outcomes: Sequence[RepeatOutcome],
    failed_steps: dict[str, list[StepFailure]],
    calls: dict[str, list[CallFigures]],
) -> CaseResult:
    usage = UsageTotals()
    repeats = []
    for outcome in outcomes:
        if outcome.usage.calls:  # most executions report none: skip the sum (runs are large)
            usage = usage.plus(outcome.usage)
        ended = outcome.status.is_terminal
        repeats.append(
            RepeatResult(
                repeat=outcome.member.repeat,
                attempt=outcome.member.attempt,
                execution_id=outcome.member.execution_id,
                status=outcome.status.value,
                ended=ended,
                passed=ended and outcome.status.value == outcome.member.expected_status,
                duration_ms=outcome.duration_ms,
                failures=tuple(failed_steps.get(outcome.member.execution_id, ())),
            )
        )
    figures = [f for outcome in outcomes for f in calls.get(outcome.member.execution_id, ())]
    return CaseResult(
        case.name,
        case.scenario,
        case.expected_status,
        tuple(repeats),
        usage,
        tuple(latency for f in figures for latency in f.turn_latencies_ms),
        tuple(confidence for f in figures for confidence in f.confidences),
    )


class CaseChange(StrEnum):
    """How one case changed from a base run to a head run."""

    REGRESSED = "REGRESSED"  # passed every repeat, now fails every repeat
    FIXED = "FIXED"  # failed every repeat, now passes every repeat
    UNCHANGED_PASS = "UNCHANGED_PASS"
    UNCHANGED_FAIL = "UNCHANGED_FAIL"
    FLAKY = "FLAKY"  # a pass rate strictly between 0 and 1, on either side
    NEW = "NEW"  # only in the head run
    REMOVED = "REMOVED"  # only in the base run
    PENDING = "PENDING"  # a side has no ended repeat yet: nothing to compare


class AssertionChangeKind(StrEnum):
    NEWLY_FAILING = "NEWLY_FAILING"
    NO_LONGER_FAILING = "NO_LONGER_FAILING"


@dataclass(frozen=True, slots=True)
class AssertionChange:
    """An assertion (of a step's `expect:`) that fails in one run's repeats and not the other's."""

    step_key: str
    assertion: str
    path: str | None
    change: AssertionChangeKind


@dataclass(frozen=True, slots=True)
class CaseComparison:
    name: str
    change: CaseChange
    base: CaseResult | None
    head: CaseResult | None
    assertion_changes: tuple[AssertionChange, ...] = ()

    @property
    def duration_p50_delta_ms(self) -> float | None:
        return _delta(
            self.base.duration_p50_ms if self.base else None,
            self.head.duration_p50_ms if self.head else None,
        )

    @property
    def cost_delta_usd(self) -> float | None:
        """Cost per repeat, head minus base; None while either side's cost is unknown."""
        return _delta(_per_repeat_cost(self.base), _per_repeat_cost(self.head))

    @property
    def tokens_delta(self) -> float | None:
        """Tokens per repeat, head minus base."""
        return _delta(_per_repeat_tokens(self.base), _per_repeat_tokens(self.head))

    @property
    def turn_latency_p50_delta_ms(self) -> float | None:
        """Of its calls' turns (the IVR's answer after each action), head minus base."""
        return _delta(
            self.base.turn_latency_p50_ms if self.base else None,
            self.head.turn_latency_p50_ms if self.head else None,
        )

    @property
    def confidence_mean_delta(self) -> float | None:
        """Of its calls' speech recognitions, head minus base."""
        return _delta(
            self.base.confidence_mean if self.base else None,
            self.head.confidence_mean if self.head else None,
        )


# The order a verdict names its counts in: what needs attention first.
_VERDICT_ORDER = (
    CaseChange.REGRESSED,
    CaseChange.FLAKY,
    CaseChange.FIXED,
    CaseChange.NEW,
    CaseChange.REMOVED,
    CaseChange.PENDING,
    CaseChange.UNCHANGED_FAIL,
    CaseChange.UNCHANGED_PASS,
)
_VERDICT_WORDS = {
    CaseChange.REGRESSED: "regressed",
    CaseChange.FLAKY: "flaky",
    CaseChange.FIXED: "fixed",
    CaseChange.NEW: "new",
    CaseChange.REMOVED: "removed",
    CaseChange.PENDING: "pending",
    CaseChange.UNCHANGED_FAIL: "still failing",
    CaseChange.UNCHANGED_PASS: "still passing",
}
_NAMED_IN_VERDICT = (CaseChange.REGRESSED, CaseChange.FLAKY, CaseChange.FIXED)
_NAMES_SHOWN = 3


@dataclass(frozen=True, slots=True)
class SuiteComparison:
    base: SuiteRunResult
    head: SuiteRunResult
    cases: tuple[CaseComparison, ...]

    def count(self, change: CaseChange) -> int:
        return sum(case.change is change for case in self.cases)

    @property
    def regressed(self) -> bool:
        return self.count(CaseChange.REGRESSED) > 0

    @property
    def verdict(self) -> str:
        """One line: `1 regressed (checkout), 1 flaky (login), 3 still passing of 5 cases`."""
        parts = []
        for change in _VERDICT_ORDER:
            names = [case.name for case in self.cases if case.change is change]
            if not names:
                continue
            part = f"{len(names)} {_VERDICT_WORDS[change]}"
            if change in _NAMED_IN_VERDICT:
                shown = ", ".join(names[:_NAMES_SHOWN])
                more = len(names) - _NAMES_SHOWN
                part += f" ({shown}{f', +{more} more' if more > 0 else ''})"
            parts.append(part)
        head = "regressions" if self.regressed else "no regressions"
        if not (self.base.complete and self.head.complete):
            head += " so far (a run has not ended)"
        return f"{head}: {', '.join(parts)} of {len(self.cases)} cases"

    @property
    def duration_p50_delta_ms(self) -> float | None:
        return _delta(self.base.duration_p50_ms, self.head.duration_p50_ms)

    @property
    def cost_delta_usd(self) -> float | None:
        """Cost per execution, head minus base."""
        return _delta(_run_cost(self.base), _run_cost(self.head))

    @property
    def tokens_delta(self) -> float | None:
        """Tokens per execution, head minus base."""
        return _delta(_run_tokens(self.base), _run_tokens(self.head))


def compare(base: SuiteRunResult, head: SuiteRunResult) -> SuiteComparison:
    """Each case of either run, by name, in the head run's order and then the removed ones."""
    base_cases = {case.name: case for case in base.cases}
    head_names = {case.name for case in head.cases}
    compared = [_compare_case(base_cases.get(case.name), case, case.name) for case in head.cases]
    compared.extend(
        _compare_case(case, None, case.name) for case in base.cases if case.name not in head_names
    )
    return SuiteComparison(base, head, tuple(compared))


def classify(base: CaseResult | None, head: CaseResult | None) -> CaseChange:
    if base is None:
        return CaseChange.NEW
    if head is None:
        return CaseChange.REMOVED
    before, after = base.pass_rate, head.pass_rate
    if before is None or after is None:
        return CaseChange.PENDING
    if 0 < before < 1 or 0 < after < 1:
        return CaseChange.FLAKY
    if before == after:
        return CaseChange.UNCHANGED_PASS if after == 1 else CaseChange.UNCHANGED_FAIL
    return CaseChange.FIXED if after == 1 else CaseChange.REGRESSED


def _compare_case(base: CaseResult | None, head: CaseResult | None, name: str) -> CaseComparison:
    before, after = _failing_assertions(base), _failing_assertions(head)
    changes = [
        AssertionChange(*key, AssertionChangeKind.NEWLY_FAILING)
        for key in sorted(after - before, key=str)
    ]
    changes.extend(
        AssertionChange(*key, AssertionChangeKind.NO_LONGER_FAILING)
        for key in sorted(before - after, key=str)
    )
    return CaseComparison(name, classify(base, head), base, head, tuple(changes))


def _failing_assertions(case: CaseResult | None) -> set[tuple[str, str, str | None]]:
    if case is None:
        return set()
    return {
        (failure.step_key, str(record.get("assertion")), record.get("path"))
        for failure in case.failures
        for record in failure.assertions
    }


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def _per_repeat_cost(case: CaseResult | None) -> float | None:
    if case is None or not case.repeats or case.usage.cost_known is None:
        return None
    return case.usage.cost_known / len(case.repeats)


def _per_repeat_tokens(case: CaseResult | None) -> float | None:
    if case is None or not case.repeats:
        return None
    return case.usage.tokens / len(case.repeats)


def _run_cost(run: SuiteRunResult) -> float | None:
    cost = run.usage.cost_known
    return None if cost is None or not run.total else cost / run.total


def _run_tokens(run: SuiteRunResult) -> float | None:
    return run.usage.tokens / run.total if run.total else None


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One run of a suite, summed: a point of its pass rate, cost and duration over time."""

    run: SuiteRun
    totals: SuiteRunTotals

    @property
    def pass_rate(self) -> float | None:
        """Passed over ended repeats."""
        return self.totals.passed / self.totals.ended if self.totals.ended else None

    @property
    def complete(self) -> bool:
        return self.totals.ended == self.totals.total

    @property
    def duration_mean_ms(self) -> float | None:
        durations = self.totals.durations
        return self.totals.duration_ms_sum / durations if durations else None
