"""Suites: save them as versions, each case checked against the scenario it runs; run every
case N times as one batch; read what a run adds up to."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from runwire.domain.access import Actor
from runwire.domain.batches import MAX_CONCURRENCY
from runwire.domain.clock import utc_now
from runwire.domain.executions import (
    ExecutionService,
    StartRequest,
    idempotency_key_errors,
    label_errors,
    priority_errors,
)
from runwire.domain.models import (
    Batch,
    Event,
    Execution,
    ScenarioVersion,
    SuiteBaseline,
    SuiteRun,
    SuiteRunCase,
    SuiteRunMember,
    SuiteVersion,
    TriggerType,
)
from runwire.domain.ports import (
    EventPublisher,
    SecretStore,
    SuiteRunStore,
    SuiteStore,
    WorkSignals,
)
from runwire.domain.scenarios import ScenarioService
from runwire.domain.secrets import missing_secrets
from runwire.domain.suite_results import (
    SuiteComparison,
    SuiteRunResult,
    TrendPoint,
    compare,
    summarize,
)
from runwire.errors import (
    FieldError,
    Invalid,
    InvalidInputs,
    InvalidTransition,
    NotFound,
    RunwireError,
)
from runwire.scenarios.definition import Definition, bind_inputs
from runwire.scenarios.limits import DEFAULT_LIMITS, InputLimits, text_bytes, too_big
from runwire.scenarios.suites import SuiteCase, SuiteDefinition, parse_suite

MAX_REPEAT = 100
MAX_TREND_RUNS = 100
# Parsed suite versions kept: the ones being run and read now; beyond, start again.
_PARSED_SUITES = 256
# Executions one run may queue: 1,000 cases by 10 repeats. A run is one transaction; far beyond
# this, queueing it would hold the database's write lock for many seconds.
MAX_RUN_EXECUTIONS = 10_000


class SuiteMismatch(RunwireError):
    """Runs of different suites cannot be compared."""

    def __init__(self, base_suite: str, head_suite: str) -> None:
        self.base_suite = base_suite
        self.head_suite = head_suite
        super().__init__(
            f"cannot compare runs of different suites: base is of {base_suite},"
            f" head is of {head_suite}"
        )


@dataclass(frozen=True, slots=True)
class SuiteRunRequest:
    """What `startSuiteRun` asks for; `inputs` override the cases' own, where a case takes them.

    `trigger` is API for startSuiteRun, SCHEDULE for a schedule's fire (whose `idempotency_key`
    is its fire key).
    """

    suite: str
    repeat: int = 1
    concurrency: int = 10
    labels: Sequence[str] = field(default=())
    inputs: Mapping[str, Any] | None = None
    priority: int = 0
    idempotency_key: str | None = None
    trigger: TriggerType = TriggerType.API


class SuiteService:
    """The only way suites are saved and run, and a run's results are read."""

    def __init__(
        self,
        store: SuiteStore,
        runs: SuiteRunStore,
        scenarios: ScenarioService,
        executions: ExecutionService,
        secrets: SecretStore,
        publisher: EventPublisher,
        signals: WorkSignals,
        limits: InputLimits = DEFAULT_LIMITS,
    ) -> None:
        self._store = store
        self._runs = runs
        self._scenarios = scenarios
        self._executions = executions
        self._secrets = secrets
        self._publisher = publisher
        self._signals = signals
        self._limits = limits
        # A stored version never changes, so its parse is kept under its identity.
        self._parsed: dict[tuple[str, str, int], SuiteDefinition] = {}

    async def save(
        self, source: str | Mapping[str, Any], actor: Actor, *, must_exist: bool | None = None
    ) -> SuiteVersion:
        """Check a suite document and store it as the next version of its suite.

        Every case must name a scenario of the workspace and give inputs its signature takes;
        errors name the case (`cases[2].inputs.colour`). `must_exist` as for scenarios.
        """
        if isinstance(source, str) and text_bytes(source) > self._limits.definition_bytes:
            size = text_bytes(source)
            raise Invalid([too_big("definition", self._limits.definition_bytes, size, "bytes")])
        suite = parse_suite(source, self._scenarios.kinds, max_steps=self._limits.definition_steps)
        await self._check_cases(suite, actor.workspace_id)
        if must_exist is not None:
            existing = await self._store.latest_suite(actor.workspace_id, suite.name)
            if must_exist and existing is None:
                raise NotFound(f"suite {suite.name} not found")
            if not must_exist and existing is not None:
                raise Invalid([FieldError("name", f"suite {suite.name} exists; update it instead")])
        return await self._store.save_suite(
            actor.workspace_id,
            suite.name,
            suite.description,
            suite.tags,
            suite.source,
            actor.label,
        )

    def parsed(self, version: SuiteVersion) -> SuiteDefinition:
        """The cases of a saved version (checked when it was saved)."""
        key = (version.workspace_id, version.name, version.version)
        found = self._parsed.get(key)
        if found is None:
            found = parse_suite(version.definition, self._scenarios.kinds)
            if len(self._parsed) >= _PARSED_SUITES:
                self._parsed.clear()
            self._parsed[key] = found
        return found

    async def definition_of(self, case: SuiteCase, workspace: str) -> Definition:
        """What a case runs: its inline definition, or its scenario's latest version."""
        if case.definition is not None:
            return case.definition
        definition, _ = await self._scenarios.resolve(workspace, case.scenario, None)
        return definition

    async def start_run(self, request: SuiteRunRequest, actor: Actor) -> SuiteRun:
        """Queue every case `repeat` times as one batch: all of them, or none.

        Repeats are queued round by round (every case once, then again), so the first results
        cover every case. A case that no longer fits its scenario (changed since the suite was
        saved) refuses the run, named by the case. With an idempotency key used before, the
        earlier run is returned and nothing is queued; the same key with a different request is
        a validation error.
        """
        errors = _run_errors(request, self._limits.labels)
        key = request.idempotency_key
        fingerprint = _fingerprint(request) if key is not None else None
        if key is not None and not errors:
            # Known from the request alone: a retry of a large run costs one read, not the
            # checking of every case.
            earlier = await self._runs.suite_run_by_key(actor.workspace_id, key)
            if earlier is not None:
                return await self._same_request(earlier, fingerprint)
        version, suite = await self._runnable(request, actor, errors)
        run_id, batch_id = str(uuid.uuid4()), str(uuid.uuid4())
        targets = await self._targets(suite, request, actor, batch_id)
        prepared: list[tuple[Execution, Event]] = []
        members: list[SuiteRunMember] = []
        for repeat in range(1, request.repeat + 1):
            for index, (case, start, definition, scenario) in enumerate(targets):
                ready = self._executions.prepare(
                    definition, scenario, start, actor, batch=(batch_id, request.concurrency)
                )
                prepared.append((ready.execution, ready.queued))
                members.append(
                    SuiteRunMember(
                        ready.execution.id,
                        run_id,
                        index,
                        case.name,
                        repeat,
                        1,
                        case.expected_status,
                    )
                )
        now = utc_now()
        run = SuiteRun(
            id=run_id,
            suite_name=version.name,
            suite_version=version.version,
            batch_id=batch_id,
            repeat=request.repeat,
            concurrency=request.concurrency,
            labels=tuple(dict.fromkeys(request.labels)),
            inputs=dict(request.inputs or {}),
            cases=tuple(
                SuiteRunCase(case.name, case.scenario, case.expected_status) for case in suite.cases
            ),
            created_at=now,
            created_by=actor.label,
            workspace_id=actor.workspace_id,
            idempotency_key=key,
            trigger_type=request.trigger,
        )
        batch = Batch(
            id=batch_id,
            name=f"suite {version.name}",
            scenario_name=None,
            concurrency=request.concurrency,
            total=len(prepared),
            created_at=now,
            created_by=actor.label,
            workspace_id=actor.workspace_id,
        )
        stored, created = await self._runs.create_suite_run(
            run, batch, prepared, members, fingerprint
        )
        if not created:  # a concurrent start with the key stored its run first
            return await self._same_request(stored, fingerprint)
        await self._publisher.publish([queued for _, queued in prepared])
        self._signals.queued()
        return run

    async def check_run(self, request: SuiteRunRequest, actor: Actor) -> None:
        """Refuse, as start_run would now, a run that could not be queued; queue nothing.

        NotFound for an unknown suite; Invalid naming the field (`inputs.<name>`, a case's
        path) otherwise.
        """
        errors = _run_errors(request, self._limits.labels)
        _, suite = await self._runnable(request, actor, errors)
        await self._targets(suite, request, actor, str(uuid.uuid4()))

    async def _runnable(
        self, request: SuiteRunRequest, actor: Actor, errors: list[FieldError]
    ) -> tuple[SuiteVersion, SuiteDefinition]:
        """The suite's latest version and its cases, or the errors found so far and its own."""
        version = await self._store.latest_suite(actor.workspace_id, request.suite)
        if version is None:
            raise NotFound(f"suite {request.suite} not found")
        suite = self.parsed(version)
        total = len(suite.cases) * request.repeat
        if total > MAX_RUN_EXECUTIONS:
            errors.append(
                FieldError(
                    "repeat",
                    f"{len(suite.cases):,} cases by {request.repeat} repeats is {total:,}"
                    f" executions; at most {MAX_RUN_EXECUTIONS:,}",
                )
            )
        if errors:
            raise Invalid(errors)
        return version, suite

    async def _same_request(self, earlier: SuiteRun, fingerprint: str | None) -> SuiteRun:
        """The earlier run with this start's key, if it was asked for the same."""
        if await self._runs.suite_run_fingerprint(earlier.id) != fingerprint:
            raise Invalid(
                [
                    FieldError(
                        "idempotency_key",
                        f"already used for a different request (suite run {earlier.id})",
                    )
                ]
            )
        return earlier

    async def retry_failed(self, run_id: str, actor: Actor) -> SuiteRun:
        """Queue again each repeat whose latest attempt ended without passing, as the next
        attempt of that repeat in the same run (and batch); the new attempt's result replaces
        the failed one's. The cases run as a new run of this suite version would now."""
        result = await self.run_result(run_id, actor)
        run = result.run
        failed = [
            (index, repeat.repeat, repeat.attempt + 1)
            for index, case in enumerate(result.cases)
            for repeat in case.repeats
            if repeat.ended and not repeat.passed
        ]
        if not failed:
            raise InvalidTransition(
                f"no repeat of suite run {run_id} has failed: nothing to retry",
                current_status="PASSED" if result.complete else "RUNNING",
            )
        version = await self._store.suite_version(
            actor.workspace_id, run.suite_name, run.suite_version
        )
        if version is None:
            raise NotFound(f"suite {run.suite_name} version {run.suite_version} not found")
        request = SuiteRunRequest(
            run.suite_name,
            repeat=run.repeat,
            concurrency=run.concurrency,
            labels=run.labels,
            inputs=run.inputs,
        )
        targets = await self._targets(self.parsed(version), request, actor, run.batch_id)
        prepared: list[tuple[Execution, Event]] = []
        members: list[SuiteRunMember] = []
        for index, repeat, attempt in failed:
            case, start, definition, scenario = targets[index]
            ready = self._executions.prepare(
                definition,
                scenario,
                replace(start, trigger=TriggerType.RETRY),
                actor,
                batch=(run.batch_id, run.concurrency),
            )
            prepared.append((ready.execution, ready.queued))
            members.append(
                SuiteRunMember(
                    ready.execution.id,
                    run.id,
                    index,
                    case.name,
                    repeat,
                    attempt,
                    case.expected_status,
                )
            )
        await self._runs.add_suite_run_attempts(run, prepared, members)
        await self._publisher.publish([queued for _, queued in prepared])
        self._signals.queued()
        return run

    async def run_result(self, run_id: str, actor: Actor) -> SuiteRunResult:
        """The run's per-case results as its executions stand now."""
        run = await self._runs.suite_run(run_id, workspace=actor.workspace_id)
        if run is None:
            raise NotFound(f"suite run {run_id} not found")
        outcomes, failures, calls = await asyncio.gather(
            self._runs.suite_run_outcomes(run_id),
            self._runs.suite_run_failures(run_id),
            self._runs.suite_run_call_figures(run_id),
        )
        return summarize(run, outcomes, failures, calls)

    async def trend(self, suite: str, last: int, actor: Actor) -> list[TrendPoint]:
        """The suite's last `last` runs, oldest first, each summed."""
        if not 1 <= last <= MAX_TREND_RUNS:
            raise Invalid([FieldError("last", f"expected 1..{MAX_TREND_RUNS}")])
        runs = await self._runs.suite_runs(actor.workspace_id, suite, last)
        totals = await self._runs.suite_run_totals([run.id for run in runs])
        return [TrendPoint(run, totals[run.id]) for run in reversed(runs) if run.id in totals]

    async def set_baseline(self, run_id: str, actor: Actor) -> SuiteBaseline:
        """Make an ended run its suite's baseline; earlier baselines stay in the history."""
        result = await self.run_result(run_id, actor)
        if not result.complete:
            raise InvalidTransition(
                f"suite run {run_id} has not ended ({result.ended} of {result.total} executions"
                " ended); a baseline is a finished run",
                current_status="RUNNING",
            )
        baseline = SuiteBaseline(
            result.run.suite_name, run_id, utc_now(), actor.label, actor.workspace_id
        )
        await self._runs.add_suite_baseline(baseline)
        return baseline

    async def baselines(self, suite: str, actor: Actor) -> list[SuiteBaseline]:
        """The suite's baselines, newest (the current one) first."""
        return await self._runs.suite_baselines(actor.workspace_id, suite)

    async def compare(self, head_id: str, base_id: str | None, actor: Actor) -> SuiteComparison:
        """Each case of `head` against `base`, or against the suite's baseline by default."""
        if base_id is None:
            run = await self._runs.suite_run(head_id, workspace=actor.workspace_id)
            if run is None:
                raise NotFound(f"suite run {head_id} not found")
            found = await self._runs.suite_baselines(actor.workspace_id, run.suite_name)
            if not found:
                raise NotFound(
                    f"suite {run.suite_name} has no baseline: set one with"
                    " setSuiteBaseline, or name the base run"
                )
            base_id = found[0].run_id
        # Two large reads that do not depend on each other: at once.
        head, base = await asyncio.gather(
            self.run_result(head_id, actor), self.run_result(base_id, actor)
        )
        if base.run.suite_name != head.run.suite_name:
            raise SuiteMismatch(base.run.suite_name, head.run.suite_name)
        return compare(base, head)

    async def _targets(
        self, suite: SuiteDefinition, request: SuiteRunRequest, actor: Actor, batch_id: str
    ) -> list[tuple[SuiteCase, StartRequest, Definition, ScenarioVersion | None]]:
        """Each case with what it starts, checked once (its repeats start the same)."""
        errors: dict[FieldError, None] = {}
        overrides = dict(request.inputs or {})
        taken: set[str] = set()
        targets = []
        resolved: dict[str, tuple[Definition, ScenarioVersion | None]] = {}
        for case in suite.cases:
            if case.definition is not None:
                definition, scenario = case.definition, None
            else:
                assert case.scenario is not None
                if case.scenario not in resolved:
                    try:
                        resolved[case.scenario] = await self._scenarios.resolve(
                            actor.workspace_id, case.scenario, None
                        )
                    except NotFound as error:
                        errors[FieldError(f"{case.path}.scenario", error.message)] = None
                        continue
                definition, scenario = resolved[case.scenario]
            declared = {spec.name for spec in definition.inputs}
            given = {name: value for name, value in overrides.items() if name in declared}
            taken.update(given)
            start = StartRequest(
                inputs={**case.inputs, **given},
                labels=tuple(dict.fromkeys([*request.labels, *case.labels])),
                priority=request.priority,
                trigger=TriggerType.SUITE,
            )
            # The suite was saved by an editor, so an inline case is authored work, as a saved
            # scenario is: only the secrets it names must exist.
            for missing in await missing_secrets(self._secrets, actor.workspace_id, definition):
                errors[FieldError(f"{case.path}.{missing.path}", missing.message)] = None
            try:
                self._executions.prepare(
                    definition, scenario, start, actor, batch=(batch_id, request.concurrency)
                )
            except Invalid as refusal:
                for e in refusal.errors:
                    if e.path.startswith("inputs."):
                        # Named where the value came from: the run's override or the case.
                        name = e.path.removeprefix("inputs.")
                        path = e.path if name in given else case.input_path(name)
                        errors[FieldError(path, e.message)] = None
                    elif e.path != "priority":  # the run's priority is checked once, above
                        errors[FieldError(f"{case.path}.{e.path}", e.message)] = None
                continue
            targets.append((case, start, definition, scenario))
        for name in overrides:
            if name not in taken:
                errors[FieldError(f"inputs.{name}", "no case of the suite takes this input")] = None
        if errors:
            raise Invalid(list(errors))
        return targets

    async def _check_cases(self, suite: SuiteDefinition, workspace: str) -> None:
        errors: dict[FieldError, None] = {}  # ordered and without repeats: a matrix repeats them
        definitions: dict[str, Definition | None] = {}
        for case in suite.cases:
            for error in label_errors(case.labels, f"{case.path}.labels", self._limits.labels):
                errors[error] = None
            definition = case.definition
            if case.scenario is not None:
                if case.scenario not in definitions:
                    try:
                        definitions[case.scenario] = await self.definition_of(case, workspace)
                    except NotFound:
                        definitions[case.scenario] = None
                definition = definitions[case.scenario]
                if definition is None:
                    message = f"unknown scenario {case.scenario}"
                    errors[FieldError(f"{case.path}.scenario", message)] = None
                    continue
            assert definition is not None
            for error in input_errors(definition, case, case.inputs):
                errors[error] = None
        if errors:
            raise Invalid(list(errors))


def input_errors(
    definition: Definition, case: SuiteCase, inputs: Mapping[str, Any]
) -> list[FieldError]:
    """What is wrong with a case's inputs for `definition`, named where the case writes them."""
    try:
        bind_inputs(definition, inputs)
    except InvalidInputs as error:
        return [
            FieldError(case.input_path(e.path.removeprefix("inputs.")), e.message)
            for e in error.errors
        ]
    return []


def _run_errors(request: SuiteRunRequest, max_labels: int) -> list[FieldError]:
    errors = priority_errors(request.priority, "priority")
    errors.extend(label_errors(request.labels, "labels", max_labels))
    errors.extend(idempotency_key_errors(request.idempotency_key))
    if not 1 <= request.repeat <= MAX_REPEAT:
        errors.append(FieldError("repeat", f"expected 1..{MAX_REPEAT}"))
    if not 1 <= request.concurrency <= MAX_CONCURRENCY:
        errors.append(FieldError("concurrency", f"expected 1..{MAX_CONCURRENCY}"))
    return errors


def _fingerprint(request: SuiteRunRequest) -> str:
    """What makes two starts of a suite run with one idempotency key the same request."""
    # The suite is named rather than compared by content, as a scenario is for executions: a new
    # version saved between a start and its retry does not turn the retry into a conflict.
    asked = {
        "suite": request.suite,
        "repeat": request.repeat,
        "concurrency": request.concurrency,
        "labels": sorted(set(request.labels)),
        "inputs": dict(request.inputs or {}),
        "priority": request.priority,
    }
    canonical = json.dumps(asked, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
