"""What a suite run's executions add up to: per case, pass rate over its repeats, durations,
usage and failures; per run, progress and counts. Pure functions over what the store read."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from runwire.domain.agents import UsageTotals
from runwire.domain.models import RepeatOutcome, StepFailure, SuiteRun, SuiteRunCase


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
    run: SuiteRun, outcomes: Iterable[RepeatOutcome], failures: Iterable[StepFailure]
) -> SuiteRunResult:
    """The run's result from its executions as they stand; the latest attempt of each repeat
    counts (retryFailed adds attempts)."""
    failed_steps: dict[str, list[StepFailure]] = {}
    for failure in failures:
        failed_steps.setdefault(failure.execution_id, []).append(failure)
    latest: dict[tuple[int, int], RepeatOutcome] = {}
    for outcome in outcomes:
        key = (outcome.member.case_index, outcome.member.repeat)
        if key not in latest or outcome.member.attempt > latest[key].member.attempt:
            latest[key] = outcome
    cases = []
    for index, case in enumerate(run.cases):
        chosen = [latest[(index, r)] for r in range(1, run.repeat + 1) if (index, r) in latest]
        cases.append(_case_result(case, chosen, failed_steps))
    return SuiteRunResult(run, tuple(cases))


def _case_result(
    case: SuiteRunCase,
    outcomes: Sequence[RepeatOutcome],
    failed_steps: dict[str, list[StepFailure]],
) -> CaseResult:
    usage = UsageTotals()
    repeats = []
    for outcome in outcomes:
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
    return CaseResult(case.name, case.scenario, case.expected_status, tuple(repeats), usage)
