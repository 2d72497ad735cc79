"""The in-memory store behaves as the database stores do: the same scenarios, the same results.

Every test runs against `memory` (tests/support/memory_store.py), `sqlite` and `postgres`, and
states the whole result it expects, so a field where the memory store and a database disagree
fails here rather than letting the domain's unit tests pass on rules the database does not keep.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tests.support import postgres
from tests.support.domain import OTHER_WORKSPACE, WORKSPACE, status_changed, step_changed
from tests.support.memory_store import DuplicateKey, MemoryStore

from runwire.core import Stores
from runwire.db.engine import Database
from runwire.domain.access import Role
from runwire.domain.agents import UsageTotals
from runwire.domain.clock import utc_now
from runwire.domain.models import (
    Batch,
    CallFigures,
    Event,
    EventDraft,
    EventType,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    RepeatOutcome,
    ScenarioVersion,
    SecretInfo,
    StepFailure,
    StepRun,
    StepStatus,
    SuiteBaseline,
    SuiteRun,
    SuiteRunCase,
    SuiteRunMember,
    SuiteRunTotals,
    SuiteVersion,
    TriggerType,
)
from runwire.domain.ports import (
    BatchStore,
    ControlRequests,
    ExecutionStore,
    ScenarioStore,
    SecretStore,
    SuiteRunStore,
    SuiteStore,
)
from runwire.domain.runners import RunnerPresence, RunnerStore, Waiting, WaitingCounts
from runwire.domain.tokens import AccessStore, ApiToken, Member, Workspace
from runwire.errors import NotFound
from runwire.queue.store import ControlRequest

S = ExecutionStatus
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
# What a unique index refuses, as each implementation says it.
DUPLICATE = (DuplicateKey, sqlite3.IntegrityError, asyncpg.UniqueViolationError)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class Backend:
    """One implementation of the store ports, and the calls a test makes past them."""

    name: str
    scenarios: ScenarioStore
    executions: ExecutionStore
    batches: BatchStore
    controls: ControlRequests
    access: AccessStore
    secrets: SecretStore
    create_workspace: Callable[[str, str], Awaitable[Workspace]]
    append: Callable[[Sequence[Event]], Awaitable[None]]
    events: Callable[[str, int], Awaitable[list[Event]]]
    pending_controls: Callable[[str], Awaitable[list[ControlRequest]]]
    mark_controls_handled: Callable[[str], Awaitable[None]]
    own: Callable[[str, str], Awaitable[None]]
    suites: SuiteStore
    suite_runs: SuiteRunStore
    runners: RunnerStore
    waiting: WaitingCounts


def in_memory() -> Backend:
    store = MemoryStore()

    async def own(execution_id: str, owner: str) -> None:
        store.own(execution_id, owner)

    return Backend(
        "memory",
        store,
        store,
        store,
        store,
        store,
        store,
        store.create_workspace,
        store.append,
        store.events,
        store.pending_controls,
        store.mark_controls_handled,
        own,
        store,
        store,
        store,
        store,
    )


def in_database(name: str, stores: Stores) -> Backend:
    async def claim(execution_id: str, owner: str) -> None:
        claimed = await stores.queue.claim(owner, 1, 60)
        assert [execution.id for execution in claimed] == [execution_id]

    return Backend(
        name,
        stores.scenarios,
        stores.executions,
        stores.batches,
        stores.queue,
        stores.access,
        stores.secrets,
        stores.access.create_workspace,
        stores.events.append,
        stores.events.events,
        stores.queue.pending_controls,
        stores.queue.mark_controls_handled,
        claim,
        stores.suites,
        stores.suite_runs,
        stores.runners,
        stores.history,
    )


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh, empty store of each kind (a database per test: claims see only its rows)."""
    if request.param == "memory":
        yield in_memory()
        return
    async with contextlib.AsyncExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'contract.sqlite'}"
            if request.param == "sqlite"
            else await stack.enter_async_context(postgres.fresh_database())
        )
        database = await stack.enter_async_context(Database.open(url, migrate=True))
        yield in_database(request.param, Stores.on(database))


def queued(execution_id: str, **fields: Any) -> tuple[Execution, Event]:
    """A queued execution as ExecutionService.prepare makes one, with its first event."""
    values: dict[str, Any] = {
        "id": execution_id,
        "workspace_id": WORKSPACE,
        "status": S.QUEUED,
        "definition": {"name": "build", "steps": [{"key": "compile", "kind": "shell"}]},
        "inputs": {"target": "prod", "count": 3},
        "queued_at": T0,
        "scenario_name": "build",
        "scenario_version": 2,
        "labels": ("nightly", "eu"),
        "priority": 5,
        "timeout_seconds": 30.0,
        "grace_seconds": 1.5,
        "last_seq": 1,
        "triggered_by": "token:ci",
        **fields,
    }
    execution = Execution(**values)
    first = Event(
        execution_id, 1, execution.queued_at, EventType.EXECUTION_STATUS, {"status": S.QUEUED}
    )
    return execution, first


async def write(
    backend: Backend, execution_id: str, first_seq: int, when: datetime, *drafts: EventDraft
) -> None:
    """Append drafts as the runner numbers them, all at one instant."""
    await backend.append(
        [
            Event(execution_id, seq, when, d.type, d.data, d.step_key, d.attempt)
            for seq, d in enumerate(drafts, first_seq)
        ]
    )


async def create(backend: Backend, execution_id: str, **fields: Any) -> Execution:
    execution, first = queued(execution_id, **fields)
    stored, created = await backend.executions.create_execution(execution, first)
    assert created
    return stored


async def read(backend: Backend, execution_id: str) -> Execution:
    found = await backend.executions.execution(execution_id, workspace=WORKSPACE)
    assert found is not None
    return found


def refuse(execution: Execution) -> list[EventDraft]:
    raise AssertionError(f"decide was called for {execution.id}")


# ---- scenarios ---------------------------------------------------------------------------


async def test_scenario_versions_change_only_with_the_definition(backend: Backend) -> None:
    store = backend.scenarios
    definition = {
        "name": "deploy",
        "steps": [{"key": "a", "kind": "sleep", "with": {"seconds": 1}}],
    }
    first = await store.save_scenario(WORKSPACE, "deploy", "ships it", definition, "user:ann")
    assert first == ScenarioVersion(
        "deploy", 1, "ships it", definition, first.created_at, workspace_id=WORKSPACE
    )

    # Key order does not make a new version, nor does a new description alone.
    reordered = {"steps": definition["steps"], "name": "deploy"}
    again = await store.save_scenario(WORKSPACE, "deploy", "new words", reordered, "user:bob")
    assert again == first

    changed = {**definition, "timeout": 60}
    second = await store.save_scenario(WORKSPACE, "deploy", "slower", changed, "user:bob")
    assert second == ScenarioVersion(
        "deploy", 2, "slower", changed, second.created_at, workspace_id=WORKSPACE
    )
    assert second.created_at >= first.created_at
    assert await store.latest_scenario(WORKSPACE, "deploy") == second

    # Versions are per workspace.
    assert await store.latest_scenario(OTHER_WORKSPACE, "deploy") is None
    elsewhere = await store.save_scenario(OTHER_WORKSPACE, "deploy", "", changed, "user:cy")
    assert (elsewhere.version, elsewhere.workspace_id) == (1, OTHER_WORKSPACE)
    assert await store.latest_scenario(WORKSPACE, "missing") is None


async def test_suite_versions_change_only_with_the_definition(backend: Backend) -> None:
    store = backend.suites
    definition = {"name": "smoke", "cases": [{"scenario": "deploy", "inputs": {"n": 1}}]}
    first = await store.save_suite(WORKSPACE, "smoke", "after deploys", ["a"], definition, "u:ann")
    assert first == SuiteVersion(
        "smoke", 1, "after deploys", ("a",), definition, first.created_at, "u:ann", WORKSPACE
    )

    reordered = {"cases": definition["cases"], "name": "smoke"}
    assert await store.save_suite(WORKSPACE, "smoke", "", [], reordered, "u:bob") == first

    changed = {**definition, "tags": ["b"]}
    second = await store.save_suite(WORKSPACE, "smoke", "", ["b"], changed, "u:bob")
    assert second == SuiteVersion(
        "smoke", 2, "", ("b",), changed, second.created_at, "u:bob", WORKSPACE
    )
    assert await store.latest_suite(WORKSPACE, "smoke") == second
    assert await store.latest_suite(OTHER_WORKSPACE, "smoke") is None
    assert await store.suite_version(WORKSPACE, "smoke", 1) == first
    assert await store.suite_version(WORKSPACE, "smoke", 3) is None


async def test_a_suite_run_is_stored_with_its_batch_and_members_and_read_back(
    backend: Backend,
) -> None:
    run = SuiteRun(
        "r-1",
        "smoke",
        2,
        "b-s",
        2,
        3,
        ("ci",),
        {"loud": True},
        (SuiteRunCase("ann", "build", "SUCCEEDED"), SuiteRunCase("x", None, "FAILED")),
        T0,
        "token:ci",
        WORKSPACE,
    )
    batch = Batch("b-s", "suite smoke", None, 3, 2, T0, "token:ci", workspace_id=WORKSPACE)
    runs = [queued(f"e-s{n}", batch_id="b-s", batch_limit=3, queued_at=at(n)) for n in range(2)]
    members = [
        SuiteRunMember("e-s0", "r-1", 0, "ann", 1, 1, "SUCCEEDED"),
        SuiteRunMember("e-s1", "r-1", 1, "x", 1, 1, "FAILED"),
    ]
    await backend.suite_runs.create_suite_run(run, batch, runs, members)

    assert await backend.suite_runs.suite_run("r-1", workspace=WORKSPACE) == run
    assert await backend.suite_runs.suite_run("r-1", workspace=OTHER_WORKSPACE) is None
    assert await backend.batches.batch("b-s", workspace=WORKSPACE) == batch
    failed = {"assertion": "exit_code", "expected": 0, "actual": 2, "passed": False}
    await write(
        backend,
        "e-s1",
        2,
        at(5),
        status_changed(S.RUNNING),
        step_changed("c", StepStatus.RUNNING, 1),
        step_changed(
            "c",
            StepStatus.FAILED,
            1,
            exit_code=2,
            error="exit code 2",
            assertions=[{"assertion": "status", "passed": True}, failed],
        ),
        status_changed(S.FAILED, duration_ms=40),
    )

    assert await backend.suite_runs.suite_run_outcomes("r-1") == [
        RepeatOutcome(members[0], S.QUEUED, None, UsageTotals()),
        RepeatOutcome(members[1], S.FAILED, 40, UsageTotals()),
    ]
    assert await backend.suite_runs.suite_run_failures("r-1") == [
        StepFailure("e-s1", "c", 1, StepStatus.FAILED, "exit code 2", (failed,))
    ]
    # A call step's figures are read from its attempt's attributes.
    figures = {"call_turn_latency_ms": [120.5, 80], "call_confidences": [0.75], "other": 1}
    await write(
        backend,
        "e-s0",
        2,
        at(6),
        status_changed(S.RUNNING),
        step_changed("dial", StepStatus.RUNNING, 1, kind="call"),
        step_changed("dial", StepStatus.SUCCEEDED, 1, kind="call", attributes=figures),
        step_changed("c2", StepStatus.RUNNING, 1, position=1),
        step_changed("c2", StepStatus.SUCCEEDED, 1, position=1, attributes={"x": [1]}),
    )
    assert await backend.suite_runs.suite_run_call_figures("r-1") == [
        CallFigures("e-s0", (120.5, 80.0), (0.75,))
    ]

    # A retry: one more attempt of repeat 1 of case "x", in the same batch.
    retry = [queued("e-s2", batch_id="b-s", batch_limit=3, queued_at=at(9))]
    retry_member = SuiteRunMember("e-s2", "r-1", 1, "x", 1, 2, "FAILED")
    await backend.suite_runs.add_suite_run_attempts(run, retry, [retry_member])
    assert [o.member for o in await backend.suite_runs.suite_run_outcomes("r-1")] == [
        *members,
        retry_member,
    ]
    assert await backend.batches.batch("b-s", workspace=WORKSPACE) == replace(batch, total=3)

    # Summed over the latest attempt of each repeat: the retry, still queued, replaces e-s1.
    assert await backend.suite_runs.suite_run_totals(["r-1", "r-none"]) == {
        "r-1": SuiteRunTotals("r-1", 2, 0, 0, 0, 0, UsageTotals())
    }
    await write(backend, "e-s2", 2, at(10), status_changed(S.FAILED, duration_ms=60))
    assert await backend.suite_runs.suite_run_totals(["r-1"]) == {
        "r-1": SuiteRunTotals("r-1", 2, 1, 1, 60, 1, UsageTotals())
    }
    assert await backend.suite_runs.suite_runs(WORKSPACE, "smoke", 5) == [run]
    assert await backend.suite_runs.suite_runs(OTHER_WORKSPACE, "smoke", 5) == []

    # A member whose execution cannot be stored (its id is taken) stores nothing of the run.
    again = replace(run, id="r-2", batch_id="b-t")
    clash = [queued("e-t0", batch_id="b-t"), queued("e-s0", batch_id="b-t")]
    clash_members = [replace(members[0], run_id="r-2", execution_id="e-t0"), members[0]]
    with pytest.raises(DUPLICATE):
        await backend.suite_runs.create_suite_run(
            again, replace(batch, id="b-t"), clash, clash_members
        )
    assert await backend.suite_runs.suite_run("r-2", workspace=WORKSPACE) is None
    assert await backend.executions.execution("e-t0", workspace=None) is None


async def test_a_suite_run_with_a_used_idempotency_key_stores_nothing(
    backend: Backend,
) -> None:
    store = backend.suite_runs
    run = SuiteRun(
        "r-k",
        "smoke",
        1,
        "b-k",
        1,
        2,
        (),
        {},
        (SuiteRunCase("ann", "build", "SUCCEEDED"),),
        T0,
        "schedule:s-1",
        WORKSPACE,
        idempotency_key="schedule:s-1:2030-01-01T12:00:00+00:00",
        trigger_type=TriggerType.SCHEDULE,
    )
    batch = Batch("b-k", "suite smoke", None, 2, 1, T0, "schedule:s-1", workspace_id=WORKSPACE)
    members = [SuiteRunMember("e-k0", "r-k", 0, "ann", 1, 1, "SUCCEEDED")]
    stored = await store.create_suite_run(
        run, batch, [queued("e-k0", batch_id="b-k")], members, "print-1"
    )
    assert stored == (run, True)

    again = replace(run, id="r-k2", batch_id="b-k2")
    found = await store.create_suite_run(
        again,
        replace(batch, id="b-k2"),
        [queued("e-k1", batch_id="b-k2")],
        [replace(members[0], run_id="r-k2", execution_id="e-k1")],
        "print-2",
    )

    assert found == (run, False)
    assert await store.suite_run("r-k2", workspace=WORKSPACE) is None
    assert await backend.batches.batch("b-k2", workspace=WORKSPACE) is None
    assert await backend.executions.execution("e-k1", workspace=None) is None
    assert await store.suite_run_fingerprint("r-k") == "print-1"
    assert await store.suite_run_by_key(WORKSPACE, str(run.idempotency_key)) == run
    assert await store.suite_run_by_key(OTHER_WORKSPACE, str(run.idempotency_key)) is None
    # Another workspace's key is its own.
    elsewhere = replace(again, workspace_id=OTHER_WORKSPACE)
    assert await store.create_suite_run(
        elsewhere,
        replace(batch, id="b-k2", workspace_id=OTHER_WORKSPACE),
        [queued("e-k1", batch_id="b-k2", workspace_id=OTHER_WORKSPACE)],
        [replace(members[0], run_id="r-k2", execution_id="e-k1")],
    ) == (elsewhere, True)


async def test_suite_baselines_are_kept_newest_first_per_suite(backend: Backend) -> None:
    store = backend.suite_runs
    first = SuiteBaseline("smoke", "r-1", T0, "token:ci", WORKSPACE)
    second = SuiteBaseline("smoke", "r-2", at(1), "user:" + "a" * 300, WORKSPACE)
    await store.add_suite_baseline(first)
    await store.add_suite_baseline(SuiteBaseline("other", "r-9", at(2), "x", WORKSPACE))
    await store.add_suite_baseline(second)

    assert await store.suite_baselines(WORKSPACE, "smoke") == [
        replace(second, set_by="user:" + "a" * 195),
        first,
    ]
    assert await store.suite_baselines(OTHER_WORKSPACE, "smoke") == []


# ---- executions --------------------------------------------------------------------------


async def test_create_stores_the_queued_execution_and_its_first_event(backend: Backend) -> None:
    execution, first = queued(
        "e-plain",
        mode=ExecutionMode.STEP_IN_CONTEXT,
        step_key="compile",
        upstream={"login": {"token": "t"}},
        concurrency_key="line-1",
        concurrency_limit=2,
        # What the store does not take from the value: projections of events yet to come.
        started_at=at(1),
        error="ignored",
        owner="ignored",
    )

    assert await backend.executions.create_execution(execution, first) == (execution, True)

    stored = replace(execution, started_at=None, error=None, owner=None)
    assert await read(backend, "e-plain") == stored
    assert await backend.executions.request_fingerprint("e-plain") is None
    assert await backend.events("e-plain", 0) == [
        Event("e-plain", 1, T0, EventType.EXECUTION_STATUS, {"status": "QUEUED"})
    ]
    with pytest.raises(DUPLICATE):
        await backend.executions.create_execution(execution, first)


async def test_an_idempotency_key_returns_the_first_execution_in_its_workspace(
    backend: Backend,
) -> None:
    store = backend.executions
    first, first_event = queued("e-first", idempotency_key="deploy-42")
    assert await store.create_execution(first, first_event, "fingerprint-1") == (first, True)
    assert await store.request_fingerprint("e-first") == "fingerprint-1"

    retry, retry_event = queued("e-retry", idempotency_key="deploy-42", priority=9)
    earlier, created = await store.create_execution(retry, retry_event, "fingerprint-2")

    assert created is False
    assert earlier == first  # as stored: the retry's values are not taken
    assert await store.execution("e-retry", workspace=None) is None
    assert await store.request_fingerprint("e-first") == "fingerprint-1"
    assert await store.request_fingerprint("e-retry") is None

    other, other_event = queued("e-other", idempotency_key="deploy-42", workspace_id="w-b")
    assert await store.create_execution(other, other_event, "fingerprint-3") == (other, True)


async def test_another_workspace_sees_no_execution_and_cannot_change_it(
    backend: Backend,
) -> None:
    await create(backend, "e-mine")
    store = backend.executions

    assert await store.execution("e-mine", workspace=OTHER_WORKSPACE) is None
    assert await store.execution("e-mine", workspace=None) == await read(backend, "e-mine")
    with pytest.raises(NotFound, match="execution e-mine not found"):
        await store.transition("e-mine", refuse, workspace=OTHER_WORKSPACE)
    with pytest.raises(NotFound, match="execution e-missing not found"):
        await store.transition("e-missing", refuse, workspace=WORKSPACE)
    assert (await read(backend, "e-mine")).last_seq == 1


async def test_events_are_numbered_and_projected_onto_the_execution_and_its_steps(
    backend: Backend,
) -> None:
    created = await create(backend, "e-run")
    # A runner runs it: the first step fails, and with it the execution.
    await write(
        backend,
        "e-run",
        2,
        at(1),
        status_changed(S.RUNNING),
        step_changed("compile", StepStatus.RUNNING, 1),
    )
    await write(
        backend,
        "e-run",
        4,
        at(3),
        EventDraft(EventType.OUTPUT, {"stream": "stdout", "text": "cc main.c\n"}, "compile", 1),
        step_changed(
            "compile",
            StepStatus.FAILED,
            1,
            exit_code=2,
            output={"stdout": "cc main.c\n", "stderr": "error: x"},
            error="exit code 2",
            assertions=[{"assertion": "exit_code", "expected": 0, "actual": 2}],
            attributes={"cost_usd": 0.5},
        ),
        status_changed(S.FAILED, error="step compile failed", duration_ms=2000),
    )
    failed_compile = StepRun(
        "e-run",
        "compile",
        "shell",
        1,
        0,
        StepStatus.FAILED,
        started_at=at(1),
        finished_at=at(3),
        exit_code=2,
        output={"stdout": "cc main.c\n", "stderr": "error: x"},
        error="exit code 2",
        assertions=({"assertion": "exit_code", "expected": 0, "actual": 2},),
        attributes={"cost_usd": 0.5},
    )
    assert await read(backend, "e-run") == replace(
        created,
        status=S.FAILED,
        started_at=at(1),
        finished_at=at(3),
        duration_ms=2000,
        error="step compile failed",
        last_seq=6,
        steps=(failed_compile,),
    )

    # An operator retries the step: a transition numbers its events after the last seq.
    retried = await backend.executions.transition(
        "e-run",
        lambda e: [
            step_changed("compile", StepStatus.PENDING, 2, reason="retry requested"),
            status_changed(S.QUEUED, reason="retrying step compile"),
        ],
        workspace=WORKSPACE,
    )
    assert retried is not None
    assert [(e.seq, e.type, e.step_key, e.attempt) for e in retried] == [
        (7, EventType.STEP_STATUS, "compile", 2),
        (8, EventType.EXECUTION_STATUS, None, None),
    ]
    assert retried[0].at == retried[1].at
    pending_compile = StepRun("e-run", "compile", "shell", 2, 0, StepStatus.PENDING)
    requeued = await read(backend, "e-run")
    assert requeued == replace(
        created,
        status=S.QUEUED,
        started_at=at(1),  # the first start stays; the end, error and duration go
        last_seq=8,
        steps=(failed_compile, pending_compile),
    )

    # It runs again and succeeds; the second step runs for the first time.
    await write(
        backend,
        "e-run",
        9,
        at(10),
        status_changed(S.RUNNING),
        step_changed("compile", StepStatus.RUNNING, 2),
        step_changed("compile", StepStatus.SUCCEEDED, 2, exit_code=0, output=None),
        step_changed("test", StepStatus.RUNNING, 1, position=1),
    )
    await write(
        backend,
        "e-run",
        13,
        at(12),
        step_changed("test", StepStatus.SUCCEEDED, 1, position=1, exit_code=0, output="ok"),
        status_changed(S.SUCCEEDED, duration_ms=11_000),
    )
    done = await read(backend, "e-run")
    assert done == replace(
        created,
        status=S.SUCCEEDED,
        started_at=at(1),
        finished_at=at(12),
        duration_ms=11_000,
        last_seq=14,
        steps=(
            failed_compile,
            replace(
                pending_compile,
                status=StepStatus.SUCCEEDED,
                started_at=at(10),
                finished_at=at(10),
                exit_code=0,
            ),
            StepRun(
                "e-run",
                "test",
                "shell",
                1,
                1,
                StepStatus.SUCCEEDED,
                started_at=at(10),
                finished_at=at(12),
                exit_code=0,
                output="ok",
            ),
        ),
    )
    without_steps = await backend.executions.execution(
        "e-run", workspace=WORKSPACE, with_steps=False
    )
    assert without_steps == replace(done, steps=())

    events = await backend.events("e-run", 0)
    assert [event.seq for event in events] == list(range(1, 15))
    assert events[6:8] == [
        Event(
            "e-run",
            7,
            retried[0].at,
            EventType.STEP_STATUS,
            {
                "status": "PENDING",
                "kind": "shell",
                "position": 0,
                "reason": "retry requested",
            },
            "compile",
            2,
        ),
        Event(
            "e-run",
            8,
            retried[0].at,
            EventType.EXECUTION_STATUS,
            {"status": "QUEUED", "reason": "retrying step compile"},
        ),
    ]
    assert await backend.events("e-run", 12) == events[12:]


async def test_step_fields_are_folded_per_batch_and_coalesced_across_batches(
    backend: Backend,
) -> None:
    created = await create(backend, "e-fold")
    # One batch: the last terminal event of an attempt decides its fields, an absent one as null.
    await write(
        backend,
        "e-fold",
        2,
        at(1),
        status_changed(S.RUNNING),
        step_changed("a", StepStatus.RUNNING, 1),
        step_changed("a", StepStatus.FAILED, 1, output={"n": 1}, error="first", exit_code=1),
        step_changed("a", StepStatus.CANCELLED, 1, position=7),
        step_changed("b", StepStatus.FAILED, 1, position=1, output="kept", exit_code=0),
    )
    # A later batch: a field it leaves out keeps the stored value; kind and position stay.
    await write(
        backend,
        "e-fold",
        7,
        at(2),
        step_changed("b", StepStatus.TIMED_OUT, 1, position=9, error="late"),
        status_changed(S.PAUSED, reason="operator", error=""),
    )

    assert await read(backend, "e-fold") == replace(
        created,
        status=S.PAUSED,
        started_at=at(1),
        last_seq=8,
        steps=(
            StepRun("e-fold", "a", "shell", 1, 0, StepStatus.CANCELLED, at(1), at(1), output=None),
            StepRun(
                "e-fold",
                "b",
                "shell",
                1,
                1,
                StepStatus.TIMED_OUT,
                finished_at=at(2),
                exit_code=0,
                output="kept",
                error="late",
            ),
        ),
    )


def used(key: str, attempt: int, tokens: int, cost: float | None) -> EventDraft:
    """A USAGE event of a step attempt (the fields the projection sums)."""
    data = {"tokens_input": tokens, "tokens_output": 2, "tokens_cached": 1, "cost_usd": cost}
    return EventDraft(EventType.USAGE, data, key, attempt)


async def test_usage_is_added_to_attempt_and_execution_rows_across_batches(
    backend: Backend,
) -> None:
    created = await create(backend, "e-used")
    await write(
        backend,
        "e-used",
        2,
        at(1),
        status_changed(S.RUNNING),
        step_changed("a", StepStatus.RUNNING, 1),
        used("a", 1, 100, 0.25),
        used("a", 1, 50, 0.5),
    )
    await write(
        backend,
        "e-used",
        6,
        at(2),
        used("a", 1, 10, None),
        # The end's attributes are a step kind's; they neither add nor replace the totals.
        step_changed("a", StepStatus.FAILED, 1, attributes={"usage_calls": 99}),
        step_changed("a", StepStatus.RUNNING, 2),
        used("a", 2, 1, 0.125),
    )
    attempt_1 = UsageTotals(calls=3, input=160, output=6, cached=3, cost_usd=0.75, unpriced=1)
    attempt_2 = UsageTotals(calls=1, input=1, output=2, cached=1, cost_usd=0.125)
    assert await read(backend, "e-used") == replace(
        created,
        status=S.RUNNING,
        started_at=at(1),
        last_seq=9,
        usage=attempt_1.plus(attempt_2),
        steps=(
            StepRun(
                "e-used",
                "a",
                "shell",
                1,
                0,
                StepStatus.FAILED,
                at(1),
                at(2),
                attributes={"usage_calls": 99},
                usage=attempt_1,
            ),
            StepRun("e-used", "a", "shell", 2, 0, StepStatus.RUNNING, at(2), usage=attempt_2),
        ),
    )


async def test_a_refused_or_empty_transition_writes_nothing(backend: Backend) -> None:
    created = await create(backend, "e-still")

    def decline(execution: Execution) -> list[EventDraft]:
        raise NotFound("declined")

    with pytest.raises(NotFound, match="declined"):
        await backend.executions.transition("e-still", decline, workspace=WORKSPACE)
    assert await backend.executions.transition("e-still", lambda e: [], workspace=WORKSPACE) == []

    assert await read(backend, "e-still") == created
    assert len(await backend.events("e-still", 0)) == 1
    with pytest.raises(DUPLICATE):
        await write(backend, "e-still", 1, at(1), status_changed(S.RUNNING))
    assert len(await backend.events("e-still", 0)) == 1


async def test_an_owned_execution_is_changed_only_by_its_owner(backend: Backend) -> None:
    await create(backend, "e-owned", priority=1000)

    await backend.own("e-owned", "runner-7")

    assert await backend.executions.transition("e-owned", refuse, workspace=WORKSPACE) is None
    owned = await read(backend, "e-owned")
    assert (owned.owner, owned.status, owned.last_seq) == ("runner-7", S.QUEUED, 1)
    with pytest.raises(NotFound):
        await backend.executions.transition("e-owned", refuse, workspace=OTHER_WORKSPACE)


async def test_cancel_unowned_ends_only_unheld_ones_in_the_statuses_by_their_status(
    backend: Backend,
) -> None:
    """A bulk stop's cancel: the event and the row say what a stop's transition would."""
    earlier = utc_now() - timedelta(seconds=2)
    never_ran = await create(backend, "e-queued")
    for execution_id in ("e-paused", "e-requeued", "e-waiting", "e-failed"):
        await create(backend, execution_id)
        await write(
            backend,
            execution_id,
            2,
            earlier,
            status_changed(S.RUNNING),
            step_changed("compile", StepStatus.RUNNING, 1),
        )
    await write(backend, "e-paused", 4, earlier, status_changed(S.PAUSED))
    await write(backend, "e-requeued", 4, earlier, status_changed(S.QUEUED, reason="retrying"))
    # A review waits in a paused execution: its review must be closed, so it is left out.
    await write(
        backend,
        "e-waiting",
        4,
        earlier,
        step_changed("compile", StepStatus.WAITING, 1),
        status_changed(S.PAUSED),
    )
    await write(backend, "e-failed", 4, earlier, status_changed(S.FAILED, error="x"))
    await create(backend, "e-owned", priority=1000)
    await backend.own("e-owned", "runner-7")
    before = {
        execution_id: await read(backend, execution_id)
        for execution_id in ("e-waiting", "e-failed", "e-owned")
    }
    ids = ["e-failed", "e-owned", "e-queued", "e-waiting", "e-requeued", "e-paused", "e-none"]

    assert (
        await backend.executions.cancel_unowned(
            ids, (S.QUEUED, S.PAUSED), "stopped: batch", workspace=OTHER_WORKSPACE
        )
        == []
    )
    events = await backend.executions.cancel_unowned(
        ids, (S.QUEUED, S.PAUSED), "stopped: batch", workspace=WORKSPACE
    )

    assert [(e.execution_id, e.seq) for e in events] == [
        ("e-paused", 5),
        ("e-queued", 2),
        ("e-requeued", 5),
    ]
    now = events[0].at
    for event in events:
        assert event.at == now
        assert event.type is EventType.EXECUTION_STATUS
        assert (await backend.events(event.execution_id, event.seq - 1)) == [event]
        duration = event.data["duration_ms"]
        assert event.data == {
            "status": S.CANCELLED,
            "error": "stopped: batch",
            "duration_ms": duration,
        }
        stored = await read(backend, event.execution_id)
        assert (stored.status, stored.error, stored.finished_at, stored.last_seq) == (
            S.CANCELLED,
            "stopped: batch",
            now,
            event.seq,
        )
        assert stored.duration_ms == duration
    assert events[1].data["duration_ms"] is None  # it never started
    assert 2000 <= events[0].data["duration_ms"] < 60_000
    assert (await read(backend, "e-queued")).started_at is never_ran.started_at is None
    for execution_id, unchanged in before.items():
        assert await read(backend, execution_id) == unchanged
    # Once ended, a second cancel finds nothing to do.
    assert (
        await backend.executions.cancel_unowned(
            ids, (S.QUEUED, S.PAUSED), "stopped: again", workspace=WORKSPACE
        )
        == []
    )


# ---- batches -----------------------------------------------------------------------------


async def test_a_batch_is_stored_with_all_its_executions_or_none(backend: Backend) -> None:
    batch = Batch("b-1", "nightly", "build", 2, 3, T0, "token:" + "c" * 300, workspace_id=WORKSPACE)
    runs = [
        queued(f"e-b{n}", batch_id="b-1", batch_limit=2, queued_at=at(n), priority=0)
        for n in range(3)
    ]
    await backend.batches.create_batch(batch, runs)

    stored = replace(batch, created_by="token:" + "c" * 194)
    assert await backend.batches.batch("b-1", workspace=WORKSPACE) == stored
    assert await backend.batches.batch("b-1", workspace=OTHER_WORKSPACE) is None
    assert await read(backend, "e-b1") == runs[1][0]
    assert await backend.executions.request_fingerprint("e-b1") is None
    assert await backend.batches.unfinished_in_batch("b-1") == ["e-b2", "e-b1", "e-b0"]

    await write(backend, "e-b1", 2, at(5), status_changed(S.CANCELLED))
    assert await backend.batches.unfinished_in_batch("b-1") == ["e-b2", "e-b0"]
    assert await backend.batches.unfinished_in_batch("b-missing") == []

    await backend.batches.mark_batch_stopped("b-1")
    stopped = await backend.batches.batch("b-1", workspace=WORKSPACE)
    assert stopped is not None
    assert stopped.stopped_at is not None
    assert stopped == replace(stored, stopped_at=stopped.stopped_at)
    await backend.batches.mark_batch_stopped("b-1")
    assert await backend.batches.batch("b-1", workspace=WORKSPACE) == stopped

    # One execution that cannot be stored (its id is taken) stores none, nor the batch.
    second = replace(batch, id="b-2")
    clash = [queued("e-new", batch_id="b-2"), queued("e-b0", batch_id="b-2")]
    with pytest.raises(DUPLICATE):
        await backend.batches.create_batch(second, clash)
    assert await backend.batches.batch("b-2", workspace=WORKSPACE) is None
    assert await backend.executions.execution("e-new", workspace=None) is None
    assert await backend.batches.unfinished_in_batch("b-2") == []


# ---- control requests --------------------------------------------------------------------


async def test_control_requests_are_stored_for_the_owning_runner(backend: Backend) -> None:
    await create(backend, "e-steered", priority=1000)
    await backend.own("e-steered", "runner-7")

    await backend.controls.request_control("e-steered", "stop", "enough", "token:ci", 0.5)
    await backend.controls.request_control(
        "e-steered", "skip_step", "", "user:ann", None, step_key="compile"
    )

    pending = await backend.pending_controls("runner-7")
    assert [replace(request, id=0) for request in pending] == [
        ControlRequest(0, "e-steered", "stop", "enough", "token:ci", 0.5),
        ControlRequest(0, "e-steered", "skip_step", "", "user:ann", None, "compile"),
    ]
    assert pending[0].id < pending[1].id
    assert await backend.pending_controls("runner-8") == []
    await backend.mark_controls_handled("e-steered")
    assert await backend.pending_controls("runner-7") == []


# ---- workspaces, tokens and members ------------------------------------------------------


async def test_tokens_are_found_by_hash_revoked_in_their_workspace_and_touched(
    backend: Backend,
) -> None:
    access = backend.access
    home = await backend.create_workspace("acme", "home")
    away = await backend.create_workspace("acme", "away")
    assert await access.workspace(home.id) == home
    assert await access.workspace("away") == away
    assert home.organization_id == away.organization_id
    assert await access.workspace("nowhere") is None

    token = ApiToken(
        "t-1",
        home.id,
        "ci",
        Role.OPERATOR,
        created_at=at(0),
        created_by="user:" + "a" * 300,
        expires_at=at(3600),
        # Not taken on insert: a new token has never been used or revoked.
        last_used_at=at(1),
        revoked_at=at(2),
    )
    older = ApiToken("t-0", home.id, "old", Role.VIEWER, created_at=at(-10), created_by="x")
    await access.insert_token(token, "hash-1")
    await access.insert_token(older, "hash-0")
    stored = replace(token, created_by="user:" + "a" * 195, last_used_at=None, revoked_at=None)

    assert await access.token_by_hash("hash-1") == stored
    assert await access.token_by_hash("hash-x") is None
    assert await access.tokens(home.id) == [older, stored]
    assert await access.tokens(away.id) == []
    assert await access.tokens_by_id(["t-1", "t-x"]) == {"t-1": stored}
    with pytest.raises(DUPLICATE):
        await access.insert_token(replace(token, id="t-2"), "hash-1")

    assert await access.revoke_token(away.id, "t-1", at(5)) is None
    assert await access.token_by_hash("hash-1") == stored
    revoked = await access.revoke_token(home.id, "t-1", at(5))
    assert revoked == replace(stored, revoked_at=at(5))
    assert await access.revoke_token(home.id, "t-1", at(6)) == revoked  # the first time stays

    await access.touch_token("t-1", at(7))
    assert await access.token_by_hash("hash-1") == replace(revoked, last_used_at=at(7))


async def test_members_are_put_changed_and_removed(backend: Backend) -> None:
    access = backend.access
    ann = Member(WORKSPACE, "ann", Role.VIEWER, at(0), "token:root")
    assert await access.put_member(ann) == ann
    assert await access.put_member(Member(WORKSPACE, "abe", Role.ADMIN, at(1), "x")) is not None

    # A new role keeps when and by whom the member was added.
    promoted = await access.put_member(Member(WORKSPACE, "ann", Role.EDITOR, at(9), "user:zed"))
    assert promoted == replace(ann, role=Role.EDITOR)
    assert await access.member(WORKSPACE, "ann") == promoted
    assert await access.member(OTHER_WORKSPACE, "ann") is None
    assert [m.subject for m in await access.members(WORKSPACE)] == ["abe", "ann"]
    assert await access.members(OTHER_WORKSPACE) == []

    assert await access.remove_member(OTHER_WORKSPACE, "ann") is False
    assert await access.remove_member(WORKSPACE, "ann") is True
    assert await access.remove_member(WORKSPACE, "ann") is False
    assert await access.member(WORKSPACE, "ann") is None


async def test_secrets_are_upserted_listed_by_name_and_kept_per_workspace(backend: Backend) -> None:
    store = backend.secrets
    first = await store.put_secret(WORKSPACE, "TOKEN", "one", "user:" + "a" * 300, at(0))
    assert first == SecretInfo("TOKEN", at(0), at(0), "user:" + "a" * 195)
    replaced = await store.put_secret(WORKSPACE, "TOKEN", "two", "token:ci", at(5))
    assert replaced == SecretInfo("TOKEN", at(0), at(5), "token:ci")
    await store.put_secret(WORKSPACE, "A_KEY", "a\nmulti-line\tvalue é", "token:ci", at(6))
    await store.put_secret(OTHER_WORKSPACE, "TOKEN", "theirs", "token:b", at(7))

    assert [info.name for info in await store.secrets(WORKSPACE)] == ["A_KEY", "TOKEN"]
    assert await store.existing_secrets(WORKSPACE, ["TOKEN", "NOPE"]) == {"TOKEN"}
    assert await store.secret_values(WORKSPACE, ["TOKEN", "A_KEY", "NOPE"]) == {
        "TOKEN": "two",
        "A_KEY": "a\nmulti-line\tvalue é",
    }
    assert await store.secret_values(OTHER_WORKSPACE, ["TOKEN", "A_KEY"]) == {"TOKEN": "theirs"}
    assert await store.secret_values(WORKSPACE, []) == {}

    assert await store.delete_secret(WORKSPACE, "TOKEN") is True
    assert await store.delete_secret(WORKSPACE, "TOKEN") is False
    assert [info.name for info in await store.secrets(WORKSPACE)] == ["A_KEY"]
    assert await store.existing_secrets(OTHER_WORKSPACE, ["TOKEN"]) == {"TOKEN"}


# ---- runners and the waiting queue -------------------------------------------------------------


def presence(runner_id: str, started: float, seen: float, busy: int = 0) -> RunnerPresence:
    """A runner's record as its heartbeat at `seen` writes it (alive for a 6 s lease)."""
    return RunnerPresence(
        id=runner_id,
        host="worker-1",
        pid=4242,
        started_at=at(started),
        last_seen_at=at(seen),
        alive_until=at(seen + 6),
        slots=4,
        busy=busy,
    )


async def test_runners_count_while_their_heartbeat_is_within_the_lease(backend: Backend) -> None:
    runners = backend.runners
    await runners.record_runner(presence("a", 0, 0))
    await runners.record_runner(presence("b", 1, 1))
    # A refresh keeps when the runner started, and says how busy it is now.
    await runners.record_runner(presence("a", 3, 3, busy=2))

    assert await runners.runners(at(4)) == [presence("a", 0, 3, busy=2), presence("b", 1, 1)]
    assert await runners.runners(at(7.5)) == [presence("a", 0, 3, busy=2)]  # b: 6 s unseen
    await runners.remove_runner("a")
    assert await runners.runners(at(4)) == [presence("b", 1, 1)]
    await runners.forget_dead_runners(at(7 + 86_400 - 1))  # b dead for less than a day: kept
    assert await runners.runners(at(4)) == [presence("b", 1, 1)]
    await runners.forget_dead_runners(at(7 + 86_400 + 1))
    assert await runners.runners(at(4)) == []


async def test_waiting_counts_queued_work_no_runner_holds(backend: Backend) -> None:
    assert await backend.waiting.waiting(None) == Waiting(0, None)
    await create(backend, "e-held", queued_at=at(0))
    await backend.own("e-held", "runner-7")
    await create(backend, "e-first", queued_at=at(1))
    await create(backend, "e-second", queued_at=at(2))
    await create(backend, "e-elsewhere", queued_at=at(0.5), workspace_id=OTHER_WORKSPACE)

    assert await backend.waiting.waiting(WORKSPACE) == Waiting(2, at(1))
    assert await backend.waiting.waiting(OTHER_WORKSPACE) == Waiting(1, at(0.5))
    assert await backend.waiting.waiting(None) == Waiting(3, at(0.5))
