"""Suite runs: every case `repeat` times as one batch, all or none; results per case."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.domain import EDITOR, OPERATOR, OUTSIDER, WORKSPACE, Domain, status_changed
from tests.support.domain import step_changed as step_event

from runwire.domain.models import ExecutionStatus, StepStatus
from runwire.domain.suite_results import CaseStatus
from runwire.domain.suites import SuiteRunRequest
from runwire.errors import FieldError, Invalid, InvalidTransition, NotFound

S = ExecutionStatus
GREET = """
name: greet
inputs:
  who: {type: string}
  loud: {type: boolean, default: false}
steps:
  - {key: say, kind: shell, with: {argv: [echo, "{{ inputs.who }}"]}}
"""
PLAIN = "name: plain\nsteps:\n  - {key: ok, kind: shell, with: {argv: ['true']}}\n"
SMOKE = """
name: smoke
cases:
  - {name: ann, scenario: greet, inputs: {who: ann}, labels: [people]}
  - {name: plain, scenario: plain}
  - {name: must-fail, scenario: plain, expect: {status: FAILED}}
"""


async def smoke(domain: Domain) -> None:
    await domain.scenarios.save(GREET, EDITOR)
    await domain.scenarios.save(PLAIN, EDITOR)
    await domain.suites.save(SMOKE, EDITOR)


def queued_ids(domain: Domain) -> list[str]:
    return [event.execution_id for event in domain.published.events]


async def refused(domain: Domain, request: SuiteRunRequest) -> tuple[FieldError, ...]:
    with pytest.raises(Invalid) as refusal:
        await domain.suites.start_run(request, OPERATOR)
    domain.assert_nothing_queued()
    return refusal.value.errors


async def test_a_run_queues_every_case_round_by_round_in_one_batch(domain: Domain) -> None:
    await smoke(domain)

    run = await domain.suites.start_run(
        SuiteRunRequest("smoke", repeat=2, concurrency=3, labels=["ci"]), OPERATOR
    )

    assert (run.suite_name, run.suite_version, run.repeat, run.concurrency) == ("smoke", 1, 2, 3)
    assert [case.name for case in run.cases] == ["ann", "plain", "must-fail"]
    assert await domain.store.suite_run(run.id, workspace=WORKSPACE) == run
    assert await domain.store.suite_run(run.id, workspace=OUTSIDER.workspace_id) is None
    batch = await domain.store.batch(run.batch_id, workspace=WORKSPACE)
    assert batch is not None
    assert (batch.name, batch.total, batch.concurrency) == ("suite smoke", 6, 3)
    executions = [await domain.read(i) for i in queued_ids(domain)]
    assert [(e.scenario_name, dict(e.inputs)) for e in executions] == [
        ("greet", {"who": "ann", "loud": False}),
        ("plain", {}),
        ("plain", {}),
    ] * 2
    assert executions[0].labels == ("ci", "people")
    assert {(e.batch_id, e.batch_limit) for e in executions} == {(run.batch_id, 3)}
    outcomes = await domain.store.suite_run_outcomes(run.id)
    assert [(o.member.case_name, o.member.repeat) for o in outcomes] == [
        ("ann", 1),
        ("ann", 2),
        ("plain", 1),
        ("plain", 2),
        ("must-fail", 1),
        ("must-fail", 2),
    ]
    assert len(domain.published.batches) == 1
    assert domain.signals.queued_count == 1


async def test_results_give_pass_rates_durations_and_failures_per_case(domain: Domain) -> None:
    await smoke(domain)
    run = await domain.suites.start_run(SuiteRunRequest("smoke", repeat=2), OPERATOR)
    ann1, plain1, fail1, ann2, plain2, _ = queued_ids(domain)
    failed_check = {"assertion": "exit_code", "expected": 0, "actual": 1, "passed": False}
    passed_check = {"assertion": "status", "passed": True}
    domain.run(ann1, status_changed(S.RUNNING), status_changed(S.SUCCEEDED, duration_ms=100))
    domain.run(
        ann2,
        status_changed(S.RUNNING),
        step_event("say", StepStatus.RUNNING, 1),
        step_event(
            "say",
            StepStatus.FAILED,
            1,
            exit_code=1,
            error="exit code 1",
            assertions=[passed_check, failed_check],
        ),
        status_changed(S.FAILED, error="step say failed", duration_ms=300),
    )
    domain.run(plain1, status_changed(S.RUNNING), status_changed(S.SUCCEEDED, duration_ms=10))
    domain.run(plain2, status_changed(S.RUNNING), status_changed(S.SUCCEEDED, duration_ms=30))
    domain.run(fail1, status_changed(S.RUNNING), status_changed(S.FAILED, duration_ms=5))

    result = await domain.suites.run_result(run.id, OPERATOR)

    ann, plain, must_fail = result.cases
    assert (ann.status, ann.passed, ann.failed, ann.pending, ann.pass_rate) == (
        CaseStatus.FLAKY,
        1,
        1,
        0,
        0.5,
    )
    assert (ann.duration_p50_ms, ann.duration_max_ms) == (200.0, 300)
    [failure] = ann.failures
    assert (failure.execution_id, failure.step_key, failure.error) == (ann2, "say", "exit code 1")
    assert failure.assertions == (failed_check,)
    assert (plain.status, plain.pass_rate, plain.duration_p50_ms) == (CaseStatus.PASSED, 1.0, 20.0)
    # A case that expects FAILED passes when it fails; its other repeat has not ended.
    assert (must_fail.status, must_fail.passed, must_fail.pending) == (CaseStatus.PASSED, 1, 1)
    assert must_fail.failures == ()
    assert (result.total, result.ended, result.complete) == (6, 5, False)
    assert result.progress == pytest.approx(5 / 6)
    assert result.pass_rate == pytest.approx(4 / 5)
    assert [r.execution_id for r in ann.repeats] == [ann1, ann2]


async def test_a_run_of_an_unknown_suite_or_another_workspaces_is_not_found(
    domain: Domain,
) -> None:
    await smoke(domain)
    with pytest.raises(NotFound, match="suite nope not found"):
        await domain.suites.start_run(SuiteRunRequest("nope"), OPERATOR)
    with pytest.raises(NotFound):
        await domain.suites.start_run(SuiteRunRequest("smoke"), OUTSIDER)
    run = await domain.suites.start_run(SuiteRunRequest("smoke"), OPERATOR)
    with pytest.raises(NotFound):
        await domain.suites.run_result(run.id, OUTSIDER)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"repeat": 0}, FieldError("repeat", "expected 1..100")),
        ({"repeat": 101}, FieldError("repeat", "expected 1..100")),
        ({"concurrency": 0}, FieldError("concurrency", "expected 1..1000")),
        ({"concurrency": 1001}, FieldError("concurrency", "expected 1..1000")),
        ({"priority": 5000}, FieldError("priority", "expected -1000..1000")),
        ({"labels": [" "]}, FieldError("labels[0]", "must not be blank")),
    ],
)
async def test_run_options_out_of_range_are_named(
    domain: Domain, fields: dict[str, Any], expected: FieldError
) -> None:
    await smoke(domain)
    assert await refused(domain, SuiteRunRequest("smoke", **fields)) == (expected,)


async def test_too_many_executions_are_refused_naming_repeat(domain: Domain) -> None:
    await domain.scenarios.save(GREET, EDITOR)
    names = ", ".join(f"p{n}" for n in range(1000))
    await domain.suites.save(
        f"name: big\ncases: [{{scenario: greet, matrix: {{who: [{names}]}}}}]", EDITOR
    )

    errors = await refused(domain, SuiteRunRequest("big", repeat=11))

    assert errors == (
        FieldError("repeat", "1,000 cases by 11 repeats is 11,000 executions; at most 10,000"),
    )


async def test_inputs_override_the_cases_that_take_them(domain: Domain) -> None:
    await smoke(domain)

    await domain.suites.start_run(SuiteRunRequest("smoke", inputs={"loud": True}), OPERATOR)

    first = await domain.read(queued_ids(domain)[0])
    assert dict(first.inputs) == {"who": "ann", "loud": True}


async def test_an_override_no_case_takes_or_of_a_wrong_type_is_named(domain: Domain) -> None:
    await smoke(domain)

    errors = await refused(domain, SuiteRunRequest("smoke", inputs={"loud": "very", "x": 1}))

    assert errors == (
        FieldError("inputs.loud", "expected boolean, got string"),
        FieldError("inputs.x", "no case of the suite takes this input"),
    )


async def test_a_case_that_no_longer_fits_its_scenario_queues_nothing(domain: Domain) -> None:
    await smoke(domain)
    # greet now requires an input the suite does not give.
    await domain.scenarios.save(
        GREET.replace("loud: {type: boolean, default: false}", "loud: {type: boolean}"), EDITOR
    )

    errors = await refused(domain, SuiteRunRequest("smoke", repeat=3))

    assert errors == (FieldError("cases[0].inputs.loud", "required"),)


async def test_retrying_queues_the_failed_repeats_as_next_attempts_of_the_same_run(
    domain: Domain,
) -> None:
    await smoke(domain)
    run = await domain.suites.start_run(SuiteRunRequest("smoke", repeat=2), OPERATOR)
    ann1, plain1, fail1, ann2, plain2, fail2 = queued_ids(domain)
    for passing in (ann1, plain1, fail1, plain2):
        expected = S.FAILED if passing == fail1 else S.SUCCEEDED
        domain.run(passing, status_changed(S.RUNNING), status_changed(expected))
    domain.run(ann2, status_changed(S.RUNNING), status_changed(S.FAILED))
    # must-fail's second repeat SUCCEEDED: that is its failure.
    domain.run(fail2, status_changed(S.RUNNING), status_changed(S.SUCCEEDED))

    await domain.suites.retry_failed(run.id, OPERATOR)

    ann_retry, fail_retry = queued_ids(domain)[6:]
    retried = await domain.read(ann_retry)
    assert (retried.batch_id, dict(retried.inputs)) == (run.batch_id, {"who": "ann", "loud": False})
    batch = await domain.store.batch(run.batch_id, workspace=WORKSPACE)
    assert batch is not None
    assert batch.total == 8
    result = await domain.suites.run_result(run.id, OPERATOR)
    ann = result.cases[0]
    assert [(r.repeat, r.attempt, r.execution_id) for r in ann.repeats] == [
        (1, 1, ann1),
        (2, 2, ann_retry),
    ]
    # The retries count as not ended yet: the run is running again.
    assert (result.total, result.ended, result.complete) == (6, 4, False)
    domain.run(ann_retry, status_changed(S.RUNNING), status_changed(S.SUCCEEDED))
    domain.run(fail_retry, status_changed(S.RUNNING), status_changed(S.FAILED))
    healed = await domain.suites.run_result(run.id, OPERATOR)
    assert [case.status for case in healed.cases] == [CaseStatus.PASSED] * 3
    assert healed.complete


async def test_retrying_a_run_without_failures_is_refused(domain: Domain) -> None:
    await smoke(domain)
    run = await domain.suites.start_run(SuiteRunRequest("smoke"), OPERATOR)

    with pytest.raises(InvalidTransition, match="nothing to retry"):
        await domain.suites.retry_failed(run.id, OPERATOR)
    with pytest.raises(NotFound):
        await domain.suites.retry_failed(run.id, OUTSIDER)


async def test_a_trend_sums_each_run_oldest_first_counting_the_latest_attempts(
    domain: Domain,
) -> None:
    await smoke(domain)
    first = await domain.suites.start_run(SuiteRunRequest("smoke"), OPERATOR)
    ann, plain, must_fail = queued_ids(domain)
    domain.run(ann, status_changed(S.RUNNING), status_changed(S.FAILED, duration_ms=100))
    domain.run(plain, status_changed(S.RUNNING), status_changed(S.SUCCEEDED, duration_ms=300))
    domain.run(must_fail, status_changed(S.RUNNING), status_changed(S.FAILED, duration_ms=200))
    await domain.suites.retry_failed(first.id, OPERATOR)
    [retry] = queued_ids(domain)[3:]
    domain.run(retry, status_changed(S.RUNNING), status_changed(S.SUCCEEDED, duration_ms=50))
    second = await domain.suites.start_run(SuiteRunRequest("smoke"), OPERATOR)

    points = await domain.suites.trend("smoke", 10, OPERATOR)

    assert [point.run.id for point in points] == [first.id, second.id]
    healed, fresh = points
    assert (healed.totals.total, healed.totals.ended, healed.pass_rate) == (3, 3, 1.0)
    assert healed.duration_mean_ms == pytest.approx((50 + 300 + 200) / 3)
    assert (fresh.complete, fresh.pass_rate, fresh.duration_mean_ms) == (False, None, None)
    assert [p.run.id for p in await domain.suites.trend("smoke", 1, OPERATOR)] == [second.id]
    with pytest.raises(Invalid):
        await domain.suites.trend("smoke", 0, OPERATOR)
