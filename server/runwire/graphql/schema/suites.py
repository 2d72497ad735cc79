"""Suites in the schema: define them, run them, read a run's results per case."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from runwire.domain import queries, suite_results
from runwire.domain.access import Permission
from runwire.domain.models import StepFailure, SuiteBaseline, SuiteVersion
from runwire.domain.suites import (
    MAX_REPEAT,
    MAX_RUN_EXECUTIONS,
    MAX_TREND_RUNS,
    SuiteMismatch,
    SuiteRunRequest,
)
from runwire.errors import FieldError, Invalid, NotFound, RunwireError
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.batches import Batch
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.errors import Error, ErrorType, to_error
from runwire.graphql.schema.inputs import json_object
from runwire.graphql.schema.types import (
    AssertionResult,
    TriggerType,
    UsageTotals,
    assertion_results,
)
from runwire.scenarios.suites import SuiteCase as ParsedCase

# Each run listed is read whole (every execution, failure and call figure): a list of runs is
# for picking one; charts over many runs read suiteTrend, one statement for all of them.
MAX_RUNS_LISTED = 20
# A live suite run is read again at most this often: a round of cases ending together (or a
# thousand) is one message, and each read is two queries over the run's executions.
SUITE_UPDATE_SECONDS = 0.25


@strawberry.type(description="One case of a suite, after its matrix or rows were expanded.")
class SuiteCase:
    name: str
    scenario: str | None = strawberry.field(description="Null for an inline definition.")
    definition_name: str | None = strawberry.field(
        description="The inline definition's name; null for a scenario."
    )
    inputs: JSON
    labels: list[str]
    expected_status: str = strawberry.field(
        description="The status a repeat must end with to pass: SUCCEEDED, FAILED or TIMED_OUT."
    )

    @classmethod
    def of(cls, case: ParsedCase) -> SuiteCase:
        return cls(
            name=case.name,
            scenario=case.scenario,
            definition_name=case.definition.name if case.definition else None,
            inputs=JSON(dict(case.inputs)),
            labels=list(case.labels),
            expected_status=case.expected_status,
        )


@strawberry.type(description="One version of a named suite: cases run and compared together.")
class Suite:
    name: str
    version: int
    description: str
    tags: list[str]
    created_at: datetime
    created_by: str
    definition: JSON = strawberry.field(description="The suite document as saved.")
    _version: strawberry.Private[SuiteVersion]

    @strawberry.field(description="Every case, matrices and rows expanded, in document order.")
    def cases(self, info: Info) -> list[SuiteCase]:
        return [SuiteCase.of(case) for case in core(info).suites.parsed(self._version).cases]

    @strawberry.field(description="The run compareSuiteRuns compares with by default, if set.")
    async def baseline(self, info: Info) -> SuiteBaselineType | None:
        history = await self.baseline_history(info)
        return history[0] if history else None

    @strawberry.field(description="Every run set as the baseline, newest (the current) first.")
    async def baseline_history(self, info: Info) -> list[SuiteBaselineType]:
        actor = authorized(info, Permission.EXECUTION_READ)
        found = await core(info).suites.baselines(self.name, actor)
        return [SuiteBaselineType.of(baseline) for baseline in found]

    @classmethod
    def of(cls, suite: SuiteVersion) -> Suite:
        return cls(
            name=suite.name,
            version=suite.version,
            description=suite.description,
            tags=list(suite.tags),
            created_at=suite.created_at,
            created_by=suite.created_by,
            definition=JSON(dict(suite.definition)),
            _version=suite,
        )


@strawberry.type(name="SuiteBaseline", description="A run set as its suite's baseline.")
class SuiteBaselineType:
    suite: str
    run_id: strawberry.ID
    set_at: datetime
    set_by: str

    @strawberry.field
    async def run(self, info: Info) -> SuiteRun | None:
        actor = authorized(info, Permission.EXECUTION_READ)
        try:
            return SuiteRun.of(await core(info).suites.run_result(str(self.run_id), actor))
        except NotFound:
            return None

    @classmethod
    def of(cls, baseline: SuiteBaseline) -> SuiteBaselineType:
        return cls(
            suite=baseline.suite_name,
            run_id=strawberry.ID(baseline.run_id),
            set_at=baseline.set_at,
            set_by=baseline.set_by,
        )


@strawberry.type
class SuiteSuccess:
    suite: Suite


SuiteResult = Annotated[SuiteSuccess | ErrorType, strawberry.union("SuiteResult")]

SuiteCaseStatus = strawberry.enum(
    suite_results.CaseStatus,
    name="SuiteCaseStatus",
    description="PENDING: no repeat ended yet; PASSED: every ended repeat passed; FAILED: none"
    " did; FLAKY: some did.",
)


@strawberry.type(description="A failed or timed-out step attempt of a repeat that did not pass.")
class SuiteCaseFailure:
    execution_id: strawberry.ID
    repeat: int
    step_key: str
    attempt: int
    status: str
    error: str | None
    failed_assertions: list[AssertionResult]

    @classmethod
    def of(cls, failure: StepFailure, repeat: int) -> SuiteCaseFailure:
        return cls(
            execution_id=strawberry.ID(failure.execution_id),
            repeat=repeat,
            step_key=failure.step_key,
            attempt=failure.attempt,
            status=failure.status.value,
            error=failure.error,
            failed_assertions=assertion_results(failure.assertions),
        )


@strawberry.type(description="One repeat of a case: its latest attempt's execution.")
class SuiteCaseRepeat:
    repeat: int
    attempt: int
    execution_id: strawberry.ID
    status: str
    passed: bool
    duration_ms: int | None


@strawberry.type(description="One case of a suite run, over its repeats.")
class SuiteCaseResult:
    name: str
    scenario: str | None
    expected_status: str
    status: SuiteCaseStatus  # type: ignore[valid-type]
    repeats: list[SuiteCaseRepeat]
    passed: int
    failed: int
    pending: int
    pass_rate: float | None = strawberry.field(
        description="Passed over ended repeats, 0..1; null until one has ended."
    )
    duration_p50_ms: float | None
    duration_max_ms: int | None
    usage: UsageTotals
    failures: list[SuiteCaseFailure]
    call_turn_latency_p50_ms: float | None = strawberry.field(
        description="Over the turns of its `call` steps' calls; null if it places none."
    )
    call_confidence_mean: float | None = strawberry.field(
        description="Of its calls' speech recognitions; null if none was recognised."
    )

    @classmethod
    def of(cls, case: suite_results.CaseResult) -> SuiteCaseResult:
        repeat_of = {r.execution_id: r.repeat for r in case.repeats}
        return cls(
            name=case.name,
            scenario=case.scenario,
            expected_status=case.expected_status,
            status=case.status,
            repeats=[
                SuiteCaseRepeat(
                    repeat=r.repeat,
                    attempt=r.attempt,
                    execution_id=strawberry.ID(r.execution_id),
                    status=r.status,
                    passed=r.passed,
                    duration_ms=r.duration_ms,
                )
                for r in case.repeats
            ],
            passed=case.passed,
            failed=case.failed,
            pending=case.pending,
            pass_rate=case.pass_rate,
            duration_p50_ms=case.duration_p50_ms,
            duration_max_ms=case.duration_max_ms,
            usage=UsageTotals.of_totals(case.usage),
            failures=[SuiteCaseFailure.of(f, repeat_of[f.execution_id]) for f in case.failures],
            call_turn_latency_p50_ms=case.turn_latency_p50_ms,
            call_confidence_mean=case.confidence_mean,
        )


@strawberry.type(
    description="Every case of a suite run `repeat` times as one batch; results as they stand."
)
class SuiteRun:
    id: strawberry.ID
    suite: str
    suite_version: int
    repeat: int
    concurrency: int
    labels: list[str]
    inputs: JSON
    created_at: datetime
    triggered_by: str = strawberry.field(
        description="Who started it: `token:<name>`, `user:<subject>`, `schedule:<id>`…; its"
        " executions carry the same."
    )
    trigger_type: TriggerType = strawberry.field(  # type: ignore[valid-type]
        description="API (startSuiteRun) or SCHEDULE (a schedule's fire or runScheduleNow)."
    )
    idempotency_key: str | None = strawberry.field(
        description="A schedule's fire is keyed `schedule:<id>:<slot>`."
    )
    batch_id: strawberry.ID = strawberry.field(
        description="Its executions' batch: executions(filter: {batch}) and"
        " executionUpdates(filter: {batch}) follow them live; stopBatch stops the run."
    )
    total: int = strawberry.field(description="Executions: cases times repeats.")
    ended: int
    progress: float = strawberry.field(description="The share of executions that ended, 0..1.")
    complete: bool
    pass_rate: float | None = strawberry.field(
        description="Passed over ended repeats over every case; null until one ended."
    )
    passed_cases: int
    failed_cases: int
    flaky_cases: int
    pending_cases: int
    duration_p50_ms: float | None
    usage: UsageTotals
    # Converted when asked for: a comparison reads two runs of up to thousands of cases, and
    # most queries of it ask for neither run's cases.
    result: strawberry.Private[suite_results.SuiteRunResult]

    @strawberry.field
    def cases(self) -> list[SuiteCaseResult]:
        return [SuiteCaseResult.of(case) for case in self.result.cases]

    @strawberry.field
    async def batch(self, info: Info) -> Batch | None:
        workspace = authorized(info, Permission.EXECUTION_READ).workspace_id
        return await Batch.load(info, str(self.batch_id), workspace)

    @classmethod
    def of(cls, result: suite_results.SuiteRunResult) -> SuiteRun:
        run = result.run
        CaseStatus = suite_results.CaseStatus
        return cls(
            id=strawberry.ID(run.id),
            suite=run.suite_name,
            suite_version=run.suite_version,
            repeat=run.repeat,
            concurrency=run.concurrency,
            labels=list(run.labels),
            inputs=JSON(dict(run.inputs)),
            created_at=run.created_at,
            triggered_by=run.created_by,
            trigger_type=run.trigger_type,
            idempotency_key=run.idempotency_key,
            batch_id=strawberry.ID(run.batch_id),
            total=result.total,
            ended=result.ended,
            progress=result.progress,
            complete=result.complete,
            pass_rate=result.pass_rate,
            passed_cases=result.count(CaseStatus.PASSED),
            failed_cases=result.count(CaseStatus.FAILED),
            flaky_cases=result.count(CaseStatus.FLAKY),
            pending_cases=result.count(CaseStatus.PENDING),
            duration_p50_ms=result.duration_p50_ms,
            usage=UsageTotals.of_totals(result.usage),
            result=result,
        )


@strawberry.input(description="Run every case of the suite's latest version `repeat` times.")
class StartSuiteRunInput:
    suite: str
    repeat: int = strawberry.field(default=1, description=f"1..{MAX_REPEAT}.")
    concurrency: int = strawberry.field(
        default=10, description="At most this many of the run's executions run at once."
    )
    labels: list[str] | None = strawberry.field(
        default=None, description="Labels of every execution, besides each case's own."
    )
    inputs: JSON | None = strawberry.field(
        default=None,
        description="Override these inputs in every case whose scenario takes them; an input"
        " no case takes is an error.",
    )
    priority: int = 0
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Starting again with the same key returns the first run instead of a new"
        " one, also under concurrent calls; the same key with a different request is an error.",
    )


@strawberry.type
class SuiteRunSuccess:
    run: SuiteRun


SuiteRunResult = Annotated[SuiteRunSuccess | ErrorType, strawberry.union("SuiteRunResult")]


SuiteCaseChange = strawberry.enum(
    suite_results.CaseChange,
    name="SuiteCaseChange",
    description="REGRESSED: passed every repeat, now fails every one; FIXED: the reverse;"
    " FLAKY: a pass rate strictly between 0 and 1 on either side; NEW/REMOVED: in one run"
    " only; PENDING: a side has no ended repeat yet.",
)
SuiteAssertionChangeKind = strawberry.enum(
    suite_results.AssertionChangeKind, name="SuiteAssertionChangeKind"
)


@strawberry.type(
    description="An assertion failing in one run's repeats of a case, not the other's."
)
class SuiteAssertionChange:
    step_key: str
    assertion: str
    path: str | None
    change: SuiteAssertionChangeKind  # type: ignore[valid-type]


@strawberry.type(description="One case of a comparison; deltas are head minus base.")
class SuiteCaseComparison:
    name: str
    change: SuiteCaseChange  # type: ignore[valid-type]
    base_status: SuiteCaseStatus | None  # type: ignore[valid-type]
    head_status: SuiteCaseStatus | None  # type: ignore[valid-type]
    base_pass_rate: float | None
    head_pass_rate: float | None
    duration_p50_delta_ms: float | None
    cost_delta_usd: float | None = strawberry.field(
        description="Per repeat; null while either side's cost is unknown."
    )
    tokens_delta: float | None = strawberry.field(description="Per repeat.")
    call_turn_latency_p50_delta_ms: float | None = strawberry.field(
        description="Of its calls' turn latencies (p50); null unless both sides placed calls."
    )
    call_confidence_mean_delta: float | None = strawberry.field(
        description="Of its calls' recognition confidence (mean)."
    )
    assertion_changes: list[SuiteAssertionChange]

    @classmethod
    def of(cls, case: suite_results.CaseComparison) -> SuiteCaseComparison:
        return cls(
            name=case.name,
            change=case.change,
            base_status=case.base.status if case.base else None,
            head_status=case.head.status if case.head else None,
            base_pass_rate=case.base.pass_rate if case.base else None,
            head_pass_rate=case.head.pass_rate if case.head else None,
            duration_p50_delta_ms=case.duration_p50_delta_ms,
            cost_delta_usd=case.cost_delta_usd,
            tokens_delta=case.tokens_delta,
            call_turn_latency_p50_delta_ms=case.turn_latency_p50_delta_ms,
            call_confidence_mean_delta=case.confidence_mean_delta,
            assertion_changes=[
                SuiteAssertionChange(
                    step_key=c.step_key, assertion=c.assertion, path=c.path, change=c.change
                )
                for c in case.assertion_changes
            ],
        )


@strawberry.type(description="Each case of the head run against the base run, by case name.")
class SuiteComparison:
    # The two runs, converted when asked for (see SuiteRun.result).
    base_result: strawberry.Private[suite_results.SuiteRunResult]
    head_result: strawberry.Private[suite_results.SuiteRunResult]

    @strawberry.field
    def base(self) -> SuiteRun:
        return SuiteRun.of(self.base_result)

    @strawberry.field
    def head(self) -> SuiteRun:
        return SuiteRun.of(self.head_result)

    verdict: str = strawberry.field(
        description="One line: what regressed, got flaky, was fixed, …, of how many cases."
    )
    regressed: bool = strawberry.field(description="Whether any case REGRESSED.")
    regressed_cases: int
    fixed_cases: int
    flaky_cases: int
    unchanged_pass_cases: int
    unchanged_fail_cases: int
    new_cases: int
    removed_cases: int
    pending_cases: int
    duration_p50_delta_ms: float | None
    cost_delta_usd: float | None = strawberry.field(description="Per execution.")
    tokens_delta: float | None = strawberry.field(description="Per execution.")
    cases: list[SuiteCaseComparison]

    @classmethod
    def of(cls, comparison: suite_results.SuiteComparison) -> SuiteComparison:
        C = suite_results.CaseChange
        return cls(
            base_result=comparison.base,
            head_result=comparison.head,
            verdict=comparison.verdict,
            regressed=comparison.regressed,
            regressed_cases=comparison.count(C.REGRESSED),
            fixed_cases=comparison.count(C.FIXED),
            flaky_cases=comparison.count(C.FLAKY),
            unchanged_pass_cases=comparison.count(C.UNCHANGED_PASS),
            unchanged_fail_cases=comparison.count(C.UNCHANGED_FAIL),
            new_cases=comparison.count(C.NEW),
            removed_cases=comparison.count(C.REMOVED),
            pending_cases=comparison.count(C.PENDING),
            duration_p50_delta_ms=comparison.duration_p50_delta_ms,
            cost_delta_usd=comparison.cost_delta_usd,
            tokens_delta=comparison.tokens_delta,
            cases=[SuiteCaseComparison.of(case) for case in comparison.cases],
        )


@strawberry.type(description="The two runs are of different suites: nothing to compare.")
class SuiteMismatchError(Error):
    base_suite: str
    head_suite: str


CompareSuiteRunsResult = Annotated[
    SuiteComparison | SuiteMismatchError | ErrorType, strawberry.union("CompareSuiteRunsResult")
]


@strawberry.type
class SetSuiteBaselineSuccess:
    baseline: SuiteBaselineType


SetSuiteBaselineResult = Annotated[
    SetSuiteBaselineSuccess | ErrorType, strawberry.union("SetSuiteBaselineResult")
]


@strawberry.type(description="One run of a suite, summed over its repeats: a point to chart.")
class SuiteTrendPoint:
    run_id: strawberry.ID
    created_at: datetime
    suite_version: int
    repeat: int
    total: int
    ended: int
    complete: bool
    pass_rate: float | None = strawberry.field(description="Passed over ended repeats.")
    duration_mean_ms: float | None = strawberry.field(
        description="Mean duration of its executions that ended."
    )
    usage: UsageTotals

    @classmethod
    def of(cls, point: suite_results.TrendPoint) -> SuiteTrendPoint:
        return cls(
            run_id=strawberry.ID(point.run.id),
            created_at=point.run.created_at,
            suite_version=point.run.suite_version,
            repeat=point.run.repeat,
            total=point.totals.total,
            ended=point.totals.ended,
            complete=point.complete,
            pass_rate=point.pass_rate,
            duration_mean_ms=point.duration_mean_ms,
            usage=UsageTotals.of_totals(point.totals.usage),
        )


@strawberry.type
class SuiteQueries:
    @strawberry.field(description="The latest version of the suite, or the given one.")
    async def suite(self, info: Info, name: str, version: int | None = None) -> Suite | None:
        workspace = authorized(info, Permission.EXECUTION_READ).workspace_id
        suites = core(info).store.suites
        found = (
            await suites.latest_suite(workspace, name)
            if version is None
            else await suites.suite_version(workspace, name, version)
        )
        return Suite.of(found) if found else None

    @strawberry.field(description="The latest version of every suite (with the tag, if given).")
    async def suites(self, info: Info, tag: str | None = None) -> list[Suite]:
        workspace = authorized(info, Permission.EXECUTION_READ).workspace_id
        return [Suite.of(found) for found in await core(info).store.suites.suites(workspace, tag)]

    @strawberry.field(description="The suite run as it stands, or null if this workspace has none.")
    async def suite_run(self, info: Info, id: strawberry.ID) -> SuiteRun | None:
        actor = authorized(info, Permission.EXECUTION_READ)
        try:
            return SuiteRun.of(await core(info).suites.run_result(str(id), actor))
        except NotFound:
            return None

    @strawberry.field(
        description=f"The suite's runs, newest first (at most {MAX_RUNS_LISTED}, each read whole;"
        " for charts over many runs use suiteTrend)."
    )
    async def suite_runs(self, info: Info, suite: str, first: int = 10) -> list[SuiteRun]:
        actor = authorized(info, Permission.EXECUTION_READ)
        if not 0 <= first <= MAX_RUNS_LISTED:
            raise Invalid([FieldError("first", f"expected 0..{MAX_RUNS_LISTED}")])
        runs = await core(info).store.suite_runs.suite_runs(actor.workspace_id, suite, first)
        return [SuiteRun.of(await core(info).suites.run_result(run.id, actor)) for run in runs]

    @strawberry.field(
        description=f"Pass rate, usage and duration of the suite's last runs, oldest first"
        f" (at most {MAX_TREND_RUNS})."
    )
    async def suite_trend(self, info: Info, suite: str, last: int = 20) -> list[SuiteTrendPoint]:
        actor = authorized(info, Permission.EXECUTION_READ)
        points = await core(info).suites.trend(suite, last, actor)
        return [SuiteTrendPoint.of(point) for point in points]

    @strawberry.field(
        description="Each case of run `head` against run `base`, or against the suite's baseline"
        " when base is not given."
    )
    async def compare_suite_runs(
        self, info: Info, head: strawberry.ID, base: strawberry.ID | None = None
    ) -> CompareSuiteRunsResult:
        actor = authorized(info, Permission.EXECUTION_READ)
        try:
            found = await core(info).suites.compare(
                str(head), None if base is None else str(base), actor
            )
        except SuiteMismatch as mismatch:
            return SuiteMismatchError(
                message=mismatch.message,
                base_suite=mismatch.base_suite,
                head_suite=mismatch.head_suite,
            )
        except RunwireError as error:
            return to_error(error)
        return SuiteComparison.of(found)


@strawberry.type
class SuiteSubscriptions:
    @strawberry.subscription(
        description="The suite run as it stands now, then again whenever its executions change"
        " (at most four times a second); completes once every repeat has ended."
    )
    async def suite_run_updates(
        self, info: Info, id: strawberry.ID
    ) -> AsyncGenerator[SuiteRun, None]:
        actor = authorized(info, Permission.EXECUTION_READ)
        suites = core(info).suites
        result = await suites.run_result(str(id), actor)  # NotFound: refused like a query
        where = queries.ExecutionFilter(workspace=actor.workspace_id, batch=result.run.batch_id)
        changed = asyncio.Event()

        async def listen() -> None:
            try:
                async with aclosing(core(info).hub.watch(where)) as updates:
                    async for _ in updates:
                        changed.set()
            finally:
                changed.set()  # a watch that failed wakes the loop, which raises its error

        listening = asyncio.create_task(listen())
        try:
            # Watch first, then read: the task registers its watcher as soon as it runs, which
            # this yield lets it do; a change committed after that sets `changed`.
            await asyncio.sleep(0)
            result = await suites.run_result(str(id), actor)
            yield SuiteRun.of(result)
            while not result.complete:
                await changed.wait()
                changed.clear()
                if listening.done():
                    listening.result()  # the watch's error, if it failed
                    return
                result = await suites.run_result(str(id), actor)
                yield SuiteRun.of(result)
                await asyncio.sleep(SUITE_UPDATE_SECONDS)
        finally:
            listening.cancel()
            # asyncio.wait neither raises the task's cancellation nor swallows this one's.
            await asyncio.wait([listening])


@strawberry.type
class SuiteMutations:
    @strawberry.mutation(
        description="Save a new suite (YAML or JSON text) as version 1; see docs/suites.md."
    )
    async def create_suite(self, info: Info, definition: str) -> SuiteResult:
        return await _save(info, definition, must_exist=False)

    @strawberry.mutation(description="Save a suite document as the next version of its suite.")
    async def update_suite(self, info: Info, definition: str) -> SuiteResult:
        return await _save(info, definition, must_exist=True)

    @strawberry.mutation(
        description=f"Queue every case `repeat` times as one batch, all or none (at most"
        f" {MAX_RUN_EXECUTIONS:,} executions); see docs/suites.md."
    )
    async def start_suite_run(self, info: Info, input: StartSuiteRunInput) -> SuiteRunResult:
        try:
            actor = authorized(info, Permission.EXECUTION_WRITE)
            request = SuiteRunRequest(
                suite=input.suite,
                repeat=input.repeat,
                concurrency=input.concurrency,
                labels=tuple(input.labels or ()),
                inputs=json_object(input.inputs, "inputs"),
                priority=input.priority,
                idempotency_key=input.idempotency_key,
            )
            suites = core(info).suites
            run = await suites.start_run(request, actor)
            result = await suites.run_result(run.id, actor)
        except RunwireError as error:
            return to_error(error)
        return SuiteRunSuccess(run=SuiteRun.of(result))

    @strawberry.mutation(
        description="Queue again each repeat of the run that ended without passing, as its next"
        " attempt in the same run; its result replaces the failed one's."
    )
    async def retry_failed_cases(self, info: Info, run: strawberry.ID) -> SuiteRunResult:
        try:
            actor = authorized(info, Permission.EXECUTION_WRITE)
            suites = core(info).suites
            retried = await suites.retry_failed(str(run), actor)
            result = await suites.run_result(retried.id, actor)
        except RunwireError as error:
            return to_error(error)
        return SuiteRunSuccess(run=SuiteRun.of(result))

    @strawberry.mutation(
        description="Make an ended run its suite's baseline (the history keeps earlier ones)."
    )
    async def set_suite_baseline(self, info: Info, run: strawberry.ID) -> SetSuiteBaselineResult:
        try:
            baseline = await core(info).suites.set_baseline(
                str(run), authorized(info, Permission.EXECUTION_WRITE)
            )
        except RunwireError as error:
            return to_error(error)
        return SetSuiteBaselineSuccess(baseline=SuiteBaselineType.of(baseline))


async def _save(info: Info, definition: str, *, must_exist: bool) -> SuiteResult:
    try:
        saved = await core(info).suites.save(
            definition, authorized(info, Permission.SCENARIO_WRITE), must_exist=must_exist
        )
    except RunwireError as error:
        return to_error(error)
    return SuiteSuccess(suite=Suite.of(saved))
