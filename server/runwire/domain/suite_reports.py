"""A suite run as reports CI systems read: JUnit XML (one test case per suite case) and JSON.

In JUnit a case that did not pass every ended repeat is a `<failure>` (type FAILED or FLAKY,
the message saying how many repeats failed), a case with no ended repeat is `<skipped>`, and
each case's failed steps and assertions are the failure's text. With a comparison, each case's
change (REGRESSED, FLAKY, …) is a property of its test case and the verdict one of the suite.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from runwire.domain.models import StepFailure
from runwire.domain.suite_results import (
    CaseComparison,
    CaseResult,
    CaseStatus,
    SuiteComparison,
    SuiteRunResult,
)


def junit_xml(result: SuiteRunResult, comparison: SuiteComparison | None = None) -> bytes:
    """The run as a JUnit XML document (UTF-8)."""
    run = result.run
    changes = _changes(comparison)
    failures = sum(case.status in (CaseStatus.FAILED, CaseStatus.FLAKY) for case in result.cases)
    skipped = result.count(CaseStatus.PENDING)
    seconds = _seconds(sum(sum(case.durations) for case in result.cases))
    counts = {
        "tests": str(len(result.cases)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(skipped),
        "time": seconds,
    }
    root = ET.Element("testsuites", {"name": run.suite_name, **counts})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": run.suite_name,
            "id": run.id,
            "timestamp": run.created_at.isoformat(),
            **counts,
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in [
        ("runwire.run", run.id),
        ("runwire.suite_version", str(run.suite_version)),
        ("runwire.repeat", str(run.repeat)),
        ("runwire.complete", str(result.complete).lower()),
        *(
            [("runwire.base_run", comparison.base.run.id), ("runwire.verdict", comparison.verdict)]
            if comparison
            else []
        ),
    ]:
        ET.SubElement(properties, "property", {"name": name, "value": value})
    for case in result.cases:
        _test_case(suite, run.suite_name, case, changes.get(case.name))
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def json_report(
    result: SuiteRunResult, comparison: SuiteComparison | None = None
) -> dict[str, Any]:
    """The run (and its comparison, if given) as plain JSON data."""
    run = result.run
    changes = _changes(comparison)
    report: dict[str, Any] = {
        "run_id": run.id,
        "suite": run.suite_name,
        "suite_version": run.suite_version,
        "repeat": run.repeat,
        "created_at": run.created_at.isoformat(),
        "triggered_by": run.created_by,
        "total": result.total,
        "ended": result.ended,
        "complete": result.complete,
        "pass_rate": result.pass_rate,
        "duration_p50_ms": result.duration_p50_ms,
        "usage": result.usage.as_data(),
        "cases": [_case_data(case, changes.get(case.name)) for case in result.cases],
    }
    if comparison is not None:
        report["comparison"] = {
            "base_run_id": comparison.base.run.id,
            "verdict": comparison.verdict,
            "regressed": comparison.regressed,
            "changes": {case.name: case.change.value for case in comparison.cases},
            "duration_p50_delta_ms": comparison.duration_p50_delta_ms,
            "cost_delta_usd": comparison.cost_delta_usd,
            "tokens_delta": comparison.tokens_delta,
        }
    return report


def _test_case(
    suite: ET.Element, classname: str, case: CaseResult, change: CaseComparison | None
) -> None:
    p50 = case.duration_p50_ms
    element = ET.SubElement(
        suite,
        "testcase",
        {"classname": classname, "name": case.name, "time": _seconds(p50 or 0)},
    )
    if change is not None:
        properties = ET.SubElement(element, "properties")
        ET.SubElement(properties, "property", {"name": "change", "value": change.change.value})
    if case.status is CaseStatus.PENDING:
        ET.SubElement(element, "skipped", {"message": "no repeat has ended"})
    elif case.status in (CaseStatus.FAILED, CaseStatus.FLAKY):
        rate = case.pass_rate or 0.0
        failure = ET.SubElement(
            element,
            "failure",
            {
                "type": case.status.value,
                "message": f"{case.failed} of {case.ended} repeats did not end"
                f" {case.expected_status} (pass rate {rate:.2f})",
            },
        )
        failure.text = "\n".join(_failure_lines(case))
    executions = ", ".join(f"{r.execution_id} ({r.status})" for r in case.repeats)
    ET.SubElement(element, "system-out").text = f"executions: {executions}"


def _failure_lines(case: CaseResult) -> list[str]:
    lines = []
    for repeat in case.repeats:
        if not repeat.ended or repeat.passed:
            continue
        lines.append(f"repeat {repeat.repeat}: execution {repeat.execution_id} {repeat.status}")
        lines.extend(f"  {_describe(failure)}" for failure in repeat.failures)
    return lines


def _describe(failure: StepFailure) -> str:
    text = f"step {failure.step_key} (attempt {failure.attempt}) {failure.status.value}"
    if failure.error:
        text += f": {failure.error}"
    for record in failure.assertions:
        text += (
            f"; {record.get('assertion')} expected {record.get('expected')!r},"
            f" got {record.get('actual')!r}"
        )
    return text


def _case_data(case: CaseResult, change: CaseComparison | None) -> dict[str, Any]:
    return {
        "name": case.name,
        "scenario": case.scenario,
        "expected_status": case.expected_status,
        "status": case.status.value,
        "change": change.change.value if change else None,
        "pass_rate": case.pass_rate,
        "passed": case.passed,
        "failed": case.failed,
        "pending": case.pending,
        "duration_p50_ms": case.duration_p50_ms,
        "duration_max_ms": case.duration_max_ms,
        "usage": case.usage.as_data(),
        "call_turn_latency_p50_ms": case.turn_latency_p50_ms,
        "call_confidence_mean": case.confidence_mean,
        "repeats": [
            {
                "repeat": r.repeat,
                "attempt": r.attempt,
                "execution_id": r.execution_id,
                "status": r.status,
                "passed": r.passed,
                "duration_ms": r.duration_ms,
            }
            for r in case.repeats
        ],
        "failures": [
            {
                "execution_id": f.execution_id,
                "step_key": f.step_key,
                "attempt": f.attempt,
                "status": f.status.value,
                "error": f.error,
                "failed_assertions": [dict(record) for record in f.assertions],
            }
            for f in case.failures
        ],
    }


def _changes(comparison: SuiteComparison | None) -> dict[str, CaseComparison]:
    return {} if comparison is None else {case.name: case for case in comparison.cases}


def _seconds(milliseconds: float) -> str:
    return f"{milliseconds / 1000:.3f}"
