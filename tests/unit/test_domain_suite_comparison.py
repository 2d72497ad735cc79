"""Comparing suite runs case by case, baselines, and the verdict."""

from __future__ import annotations

import pytest
from tests.support.domain import EDITOR, OPERATOR, OUTSIDER, Domain, status_changed, step_changed

from runwire.domain.models import EventDraft, ExecutionStatus, StepStatus, SuiteRun
from runwire.domain.suite_results import (
    AssertionChange,
    AssertionChangeKind,
    CaseChange,
    CaseResult,
    RepeatResult,
    classify,
)
from runwire.domain.suites import SuiteMismatch, SuiteRunRequest
from runwire.errors import InvalidTransition, NotFound

S = ExecutionStatus
C = CaseChange
PLAIN = "name: plain\nsteps:\n  - {key: ok, kind: shell, with: {argv: ['true']}}\n"
CASES = ["stable", "to-regress", "to-flake", "to-fix", "broken", "removed"]


def suite_text(names: list[str], suite: str = "smoke") -> str:
    cases = "\n".join(f"  - {{name: {name}, scenario: plain}}" for name in names)
    return f"name: {suite}\ncases:\n{cases}\n"


def case(*outcomes: bool | None) -> CaseResult:
    """A case whose repeats passed (True), failed (False) or have not ended (None)."""
    return CaseResult(
        "c",
        "plain",
        "SUCCEEDED",
        tuple(
            RepeatResult(n, 1, f"e{n}", "X", passed is not None, bool(passed), 10)
            for n, passed in enumerate(outcomes, 1)
        ),
    )


@pytest.mark.parametrize(
    ("base", "head", "expected"),
    [
        (case(True, True), case(True, True), C.UNCHANGED_PASS),
        (case(False), case(False, False), C.UNCHANGED_FAIL),
        (case(True, True), case(False, False), C.REGRESSED),
        (case(False), case(True), C.FIXED),
        (case(True, True), case(True, False), C.FLAKY),
        (case(True, False), case(True, True), C.FLAKY),
        (case(True, False), case(False, False), C.FLAKY),
        (None, case(True), C.NEW),
        (case(True), None, C.REMOVED),
        (case(True), case(None, None), C.PENDING),
        # Only ended repeats count: one failed, one still running is a failing case so far.
        (case(True), case(False, None), C.REGRESSED),
    ],
)
def test_each_case_is_classified_by_its_pass_rates(
    base: CaseResult | None, head: CaseResult | None, expected: CaseChange
) -> None:
    assert classify(base, head) is expected


async def started(domain: Domain, repeat: int = 1, suite: str = "smoke") -> SuiteRun:
    return await domain.suites.start_run(SuiteRunRequest(suite, repeat=repeat), OPERATOR)


def finish(domain: Domain, run_ids: list[str], *statuses: S, failing: str | None = None) -> None:
    """End each execution with its status; a FAILED one fails step `ok` on `failing`."""
    for execution_id, status in zip(run_ids, statuses, strict=True):
        drafts = [status_changed(S.RUNNING)]
        if status is S.FAILED and failing:
            check = {"assertion": failing, "expected": 0, "actual": 1, "passed": False}
            drafts += [
                step_changed("ok", StepStatus.RUNNING, 1),
                step_changed("ok", StepStatus.FAILED, 1, assertions=[check]),
            ]
        domain.run(execution_id, *drafts, status_changed(status, duration_ms=100))


def new_ids(domain: Domain, seen: int) -> list[str]:
    return [event.execution_id for event in domain.published.events][seen:]


async def test_a_comparison_names_what_regressed_got_flaky_was_fixed_added_or_removed(
    domain: Domain,
) -> None:
    await domain.scenarios.save(PLAIN, EDITOR)
    await domain.suites.save(suite_text(CASES), EDITOR)
    base = await started(domain, repeat=2)
    P, F = S.SUCCEEDED, S.FAILED
    # Round by round: the six cases once, then again.
    finish(domain, new_ids(domain, 0), P, P, P, F, F, P, P, P, P, F, F, P, failing="exit_code")
    await domain.suites.save(suite_text([*CASES[:-1], "added"]), EDITOR)
    head = await started(domain, repeat=2)
    finish(domain, new_ids(domain, 12), P, F, P, P, F, P, P, F, F, P, F, P, failing="exit_code")

    comparison = await domain.suites.compare(head.id, base.id, OPERATOR)

    assert [(c.name, c.change) for c in comparison.cases] == [
        ("stable", C.UNCHANGED_PASS),
        ("to-regress", C.REGRESSED),
        ("to-flake", C.FLAKY),
        ("to-fix", C.FIXED),
        ("broken", C.UNCHANGED_FAIL),
        ("added", C.NEW),
        ("removed", C.REMOVED),
    ]
    assert comparison.regressed
    assert comparison.verdict == (
        "regressions: 1 regressed (to-regress), 1 flaky (to-flake), 1 fixed (to-fix), 1 new,"
        " 1 removed, 1 still failing, 1 still passing of 7 cases"
    )
    regressed = comparison.cases[1]
    assert regressed.assertion_changes == (
        AssertionChange("ok", "exit_code", None, AssertionChangeKind.NEWLY_FAILING),
    )
    assert comparison.cases[3].assertion_changes == (
        AssertionChange("ok", "exit_code", None, AssertionChangeKind.NO_LONGER_FAILING),
    )
    assert regressed.duration_p50_delta_ms == 0.0
    assert regressed.tokens_delta == 0.0
    assert comparison.duration_p50_delta_ms == 0.0


async def test_the_baseline_is_the_default_base_and_keeps_its_history(domain: Domain) -> None:
    await domain.scenarios.save(PLAIN, EDITOR)
    await domain.suites.save(suite_text(["a"]), EDITOR)
    first = await started(domain)
    finish(domain, new_ids(domain, 0), S.SUCCEEDED)
    second = await started(domain)
    finish(domain, new_ids(domain, 1), S.FAILED)

    with pytest.raises(NotFound, match="suite smoke has no baseline"):
        await domain.suites.compare(second.id, None, OPERATOR)
    await domain.suites.set_baseline(first.id, OPERATOR)
    against_first = await domain.suites.compare(second.id, None, OPERATOR)
    await domain.suites.set_baseline(second.id, EDITOR)
    against_second = await domain.suites.compare(second.id, None, OPERATOR)

    assert against_first.base.run.id == first.id
    assert [c.change for c in against_first.cases] == [C.REGRESSED]
    assert against_first.verdict == "regressions: 1 regressed (a) of 1 cases"
    assert against_second.base.run.id == second.id
    assert against_second.verdict == "no regressions: 1 still failing of 1 cases"
    history = await domain.suites.baselines("smoke", OPERATOR)
    assert [(b.run_id, b.set_by) for b in history] == [
        (second.id, "user:editor"),
        (first.id, "token:ci"),
    ]


async def test_an_unfinished_run_cannot_be_the_baseline(domain: Domain) -> None:
    await domain.scenarios.save(PLAIN, EDITOR)
    await domain.suites.save(suite_text(["a", "b"]), EDITOR)
    run = await started(domain)
    finish(domain, new_ids(domain, 0)[:1], S.SUCCEEDED)

    with pytest.raises(InvalidTransition, match=r"has not ended \(1 of 2 executions ended\)"):
        await domain.suites.set_baseline(run.id, OPERATOR)
    assert await domain.suites.baselines("smoke", OPERATOR) == []


async def test_runs_of_different_suites_are_not_compared(domain: Domain) -> None:
    await domain.scenarios.save(PLAIN, EDITOR)
    await domain.suites.save(suite_text(["a"]), EDITOR)
    await domain.suites.save(suite_text(["a"], suite="other"), EDITOR)
    smoke = await started(domain)
    other = await started(domain, suite="other")

    with pytest.raises(SuiteMismatch) as refusal:
        await domain.suites.compare(other.id, smoke.id, OPERATOR)

    assert (refusal.value.base_suite, refusal.value.head_suite) == ("smoke", "other")
    with pytest.raises(NotFound):
        await domain.suites.compare(smoke.id, smoke.id, OUTSIDER)


async def test_an_unfinished_run_compares_so_far(domain: Domain) -> None:
    await domain.scenarios.save(PLAIN, EDITOR)
    await domain.suites.save(suite_text(["a", "b"]), EDITOR)
    base = await started(domain)
    finish(domain, new_ids(domain, 0), S.SUCCEEDED, S.SUCCEEDED)
    head = await started(domain)
    finish(domain, new_ids(domain, 2)[:1], S.SUCCEEDED)

    comparison = await domain.suites.compare(head.id, base.id, OPERATOR)

    assert [c.change for c in comparison.cases] == [C.UNCHANGED_PASS, C.PENDING]
    assert comparison.verdict == (
        "no regressions so far (a run has not ended): 1 pending, 1 still passing of 2 cases"
    )


def call_step(latencies: list[float], confidences: list[float]) -> list[EventDraft]:
    """A `call` step attempt that measured these turn latencies and confidences."""
    attributes = {"call_turn_latency_ms": latencies, "call_confidences": confidences}
    return [
        step_changed("dial", StepStatus.RUNNING, 1, kind="call"),
        step_changed("dial", StepStatus.SUCCEEDED, 1, kind="call", attributes=attributes),
    ]


async def test_calls_compare_by_turn_latency_and_recognition_confidence(domain: Domain) -> None:
    await domain.scenarios.save(PLAIN, EDITOR)
    await domain.suites.save(suite_text(["ivr", "no-call"]), EDITOR)
    base = await started(domain, repeat=2)
    ivr1, plain1, ivr2, plain2 = new_ids(domain, 0)
    for execution_id, figures in [
        (ivr1, call_step([100.0, 300.0], [0.9])),
        (ivr2, call_step([200.0], [0.7])),
        (plain1, []),
        (plain2, []),
    ]:
        domain.run(execution_id, status_changed(S.RUNNING), *figures, status_changed(S.SUCCEEDED))
    head = await started(domain)
    ivr, plain = new_ids(domain, 4)
    domain.run(
        ivr, status_changed(S.RUNNING), *call_step([450.0], [0.6]), status_changed(S.SUCCEEDED)
    )
    domain.run(plain, status_changed(S.RUNNING), status_changed(S.SUCCEEDED))

    comparison = await domain.suites.compare(head.id, base.id, OPERATOR)

    ivr_case, plain_case = comparison.cases
    assert ivr_case.base is not None
    assert (ivr_case.base.turn_latency_p50_ms, ivr_case.base.confidence_mean) == (
        200.0,
        pytest.approx(0.8),
    )
    assert ivr_case.turn_latency_p50_delta_ms == 250.0
    assert ivr_case.confidence_mean_delta == pytest.approx(-0.2)
    assert (plain_case.turn_latency_p50_delta_ms, plain_case.confidence_mean_delta) == (None, None)
