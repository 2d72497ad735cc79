"""In-memory doubles of the domain's ports, so the domain's rules are tested without a database.

`MemoryStore` is one store for every noun the services use: scenarios, executions with their
step attempts and events, batches, control requests, tokens and members. It keeps rows shaped
as the database keeps them (JSON columns as text) and reads them back through the database's own
row mappers, and it folds events into execution and step rows as `runwire.db.projection` does;
tests/integration/test_store_contract.py runs the same scenarios against it and against SQLite
and Postgres, so the two cannot drift apart unnoticed.

`EventsPublished` and `SignalsSent` record what the services handed to the publisher and to the
queue's signals.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from runwire.db.rows import (
    batch_of,
    call_figures_of,
    canonical,
    dump,
    event_of,
    execution_of,
    load,
    repeat_outcome_of,
    scenario_of,
    step_failure_of,
    step_run_of,
    suite_baseline_of,
    suite_of,
    suite_run_cases_text,
    suite_run_of,
    usage_of,
)
from runwire.domain.agents import UsageTotals, reported
from runwire.domain.clock import utc_now
from runwire.domain.models import (
    Activity,
    Batch,
    CallFigures,
    Event,
    EventDraft,
    EventType,
    Execution,
    ExecutionStatus,
    RepeatOutcome,
    ScenarioVersion,
    SecretInfo,
    StepFailure,
    StepRun,
    StepStatus,
    SuiteBaseline,
    SuiteRun,
    SuiteRunMember,
    SuiteRunTotals,
    SuiteVersion,
    duration_between,
)
from runwire.domain.ports import Decide
from runwire.domain.runners import RunnerPresence, Waiting
from runwire.domain.tokens import ApiToken, Member, Workspace
from runwire.errors import FieldError, Invalid, InvalidTransition, NotFound
from runwire.queue.store import ControlRequest

Row = dict[str, Any]
"""A stored row: column name to value, JSON columns as their text."""


class DuplicateKey(Exception):
    """A unique key (an id, an idempotency key, a seq, a token hash) is taken; nothing written."""


class MemoryStore:
    """Every store port in plain dicts: ScenarioStore, ExecutionStore, BatchStore,
    ControlRequests, SecretStore, AccessStore, RunnerStore and WaitingCounts, plus the event
    log's `append`/`events`.

    Test hooks stand in for a runner: `own` claims an execution, `append_as_owner` writes its
    events as the owning runner would, `release` lets go of it.
    """

    def __init__(self) -> None:
        self._scenarios: dict[tuple[str, str], list[Row]] = {}
        self._suites: dict[tuple[str, str], list[Row]] = {}
        self._suite_runs: dict[str, Row] = {}
        self._suite_run_members: dict[str, Row] = {}
        self._suite_baselines: list[Row] = []
        self._executions: dict[str, Row] = {}
        self.activities: list[Activity] = []  # the audit records stored with starts
        self._step_runs: dict[str, dict[tuple[str, int], Row]] = {}
        self._events: dict[str, list[Event]] = {}
        self._batches: dict[str, Row] = {}
        self._controls: list[ControlRequest] = []
        self._handled_controls: set[int] = set()
        self._control_ids = itertools.count(1)
        self._organizations: dict[str, str] = {}
        self._workspaces: list[Workspace] = []
        self._tokens: dict[str, ApiToken] = {}
        self._token_ids_by_hash: dict[str, str] = {}
        self._members: dict[tuple[str, str], Member] = {}
        # (workspace, name) -> (info, value)
        self._secrets: dict[tuple[str, str], tuple[SecretInfo, str]] = {}
        self._runners: dict[str, RunnerPresence] = {}

    # ---- scenarios -----------------------------------------------------------------------

    async def save_scenario(
        self,
        workspace: str,
        name: str,
        description: str,
        definition: Mapping[str, Any],
        actor: str,
    ) -> ScenarioVersion:
        """The next version of `name`; the latest one unchanged if the definition equals it."""
        versions = self._scenarios.setdefault((workspace, name), [])
        if versions and canonical(load(versions[-1]["definition"])) == canonical(definition):
            return scenario_of(versions[-1])
        row = {
            "workspace_id": workspace,
            "name": name,
            "version": len(versions) + 1,
            "description": description,
            "definition": dump(definition),
            "created_at": utc_now(),
            "created_by": actor[:200],
        }
        versions.append(row)
        return scenario_of(row)

    async def latest_scenario(self, workspace: str, name: str) -> ScenarioVersion | None:
        versions = self._scenarios.get((workspace, name))
        return scenario_of(versions[-1]) if versions else None

    # ---- suites --------------------------------------------------------------------------

    async def save_suite(
        self,
        workspace: str,
        name: str,
        description: str,
        tags: Sequence[str],
        definition: Mapping[str, Any],
        actor: str,
    ) -> SuiteVersion:
        """The next version of `name`; the latest one unchanged if the definition equals it."""
        versions = self._suites.setdefault((workspace, name), [])
        if versions and canonical(load(versions[-1]["definition"])) == canonical(definition):
            return suite_of(versions[-1])
        row = {
            "workspace_id": workspace,
            "name": name,
            "version": len(versions) + 1,
            "description": description,
            "tags": dump(list(tags)),
            "definition": dump(definition),
            "created_at": utc_now(),
            "created_by": actor[:200],
        }
        versions.append(row)
        return suite_of(row)

    async def latest_suite(self, workspace: str, name: str) -> SuiteVersion | None:
        versions = self._suites.get((workspace, name))
        return suite_of(versions[-1]) if versions else None

    async def create_suite_run(
        self,
        run: SuiteRun,
        batch: Batch,
        executions: Sequence[tuple[Execution, Event]],
        members: Sequence[SuiteRunMember],
        fingerprint: str | None = None,
    ) -> tuple[SuiteRun, bool]:
        """The run, its batch, every execution and member row: all or none; (the earlier run,
        False) for a used idempotency key."""
        key = run.idempotency_key
        if key is not None and (earlier := await self.suite_run_by_key(run.workspace_id, key)):
            return earlier, False
        if run.id in self._suite_runs or any(
            m.execution_id in self._suite_run_members for m in members
        ):
            raise DuplicateKey(f"suite run {run.id} or one of its executions exists")
        await self.create_batch(batch, executions)
        self._suite_runs[run.id] = {
            "id": run.id,
            "workspace_id": run.workspace_id,
            "suite_name": run.suite_name,
            "suite_version": run.suite_version,
            "batch_id": run.batch_id,
            "repeat": run.repeat,
            "concurrency": run.concurrency,
            "labels": dump(list(run.labels)),
            "inputs": dump(run.inputs),
            "cases": suite_run_cases_text(run.cases),
            "created_at": run.created_at,
            "created_by": run.created_by[:200],
            "idempotency_key": key,
            "request_fingerprint": fingerprint,
            "trigger_type": run.trigger_type.value,
        }
        for member in members:
            self._suite_run_members[member.execution_id] = {
                "execution_id": member.execution_id,
                "run_id": member.run_id,
                "case_index": member.case_index,
                "case_name": member.case_name,
                "repeat": member.repeat,
                "attempt": member.attempt,
                "expected_status": member.expected_status,
            }
        return run, True

    async def suite_run_fingerprint(self, run_id: str) -> str | None:
        row = self._suite_runs.get(run_id)
        return None if row is None else row["request_fingerprint"]

    async def suite_run_by_key(self, workspace: str, key: str) -> SuiteRun | None:
        for row in self._suite_runs.values():
            if (row["workspace_id"], row["idempotency_key"]) == (workspace, key):
                return suite_run_of(row)
        return None

    async def suite_version(self, workspace: str, name: str, version: int) -> SuiteVersion | None:
        versions = self._suites.get((workspace, name), [])
        return suite_of(versions[version - 1]) if 0 < version <= len(versions) else None

    async def add_suite_run_attempts(
        self,
        run: SuiteRun,
        executions: Sequence[tuple[Execution, Event]],
        members: Sequence[SuiteRunMember],
    ) -> None:
        """Retries of the run: executions, member rows, and the batch's total, all or none."""
        if any(m.execution_id in self._suite_run_members for m in members):
            raise DuplicateKey("one of the retried executions exists")
        self._insert_executions([(execution, event, None) for execution, event in executions])
        self._batches[run.batch_id]["total"] += len(executions)
        for member in members:
            self._suite_run_members[member.execution_id] = {
                "execution_id": member.execution_id,
                "run_id": member.run_id,
                "case_index": member.case_index,
                "case_name": member.case_name,
                "repeat": member.repeat,
                "attempt": member.attempt,
                "expected_status": member.expected_status,
            }

    async def suite_run(self, run_id: str, *, workspace: str) -> SuiteRun | None:
        row = self._suite_runs.get(run_id)
        return suite_run_of(row) if row is not None and row["workspace_id"] == workspace else None

    async def suite_runs(self, workspace: str, suite: str, limit: int) -> list[SuiteRun]:
        rows = [
            row
            for row in self._suite_runs.values()
            if (row["workspace_id"], row["suite_name"]) == (workspace, suite)
        ]
        rows.sort(key=lambda row: (row["created_at"], row["id"]), reverse=True)
        return [suite_run_of(row) for row in rows[:limit]]

    async def suite_run_totals(self, run_ids: Sequence[str]) -> dict[str, SuiteRunTotals]:
        """Each run summed over the latest attempt of each repeat, as the SQL does."""
        latest: dict[tuple[str, int, int], Row] = {}
        for member in self._suite_run_members.values():
            if member["run_id"] not in run_ids:
                continue
            key = (member["run_id"], member["case_index"], member["repeat"])
            if key not in latest or member["attempt"] > latest[key]["attempt"]:
                latest[key] = member
        totals: dict[str, SuiteRunTotals] = {}
        for (run_id, _, _), member in sorted(latest.items()):
            row = self._executions[member["execution_id"]]
            status = ExecutionStatus(row["status"])
            before = totals.get(run_id, SuiteRunTotals(run_id, 0, 0, 0, 0, 0))
            duration = row["duration_ms"]
            totals[run_id] = SuiteRunTotals(
                run_id,
                before.total + 1,
                before.ended + status.is_terminal,
                before.passed + (status.value == member["expected_status"]),
                before.duration_ms_sum + (duration or 0),
                before.durations + (duration is not None),
                before.usage.plus(usage_of(row)),
            )
        return totals

    async def suite_run_outcomes(self, run_id: str) -> list[RepeatOutcome]:
        rows = [
            {**self._executions[m["execution_id"]], **m}
            for m in self._suite_run_members.values()
            if m["run_id"] == run_id
        ]
        rows.sort(key=lambda row: (row["case_index"], row["repeat"], row["attempt"]))
        return [repeat_outcome_of(row) for row in rows]

    async def suite_run_call_figures(self, run_id: str) -> list[CallFigures]:
        ids = sorted(
            m["execution_id"] for m in self._suite_run_members.values() if m["run_id"] == run_id
        )
        rows = [
            row
            for execution_id in ids
            for row in sorted(
                self._step_runs.get(execution_id, {}).values(),
                key=lambda row: (row["position"], row["attempt"]),
            )
            if row["kind"] == "call" and row["attributes"] is not None
        ]
        return [call_figures_of(row) for row in rows]

    async def suite_run_failures(self, run_id: str) -> list[StepFailure]:
        ids = sorted(
            m["execution_id"] for m in self._suite_run_members.values() if m["run_id"] == run_id
        )
        rows = [
            row
            for execution_id in ids
            for row in sorted(
                self._step_runs.get(execution_id, {}).values(),
                key=lambda row: (row["position"], row["attempt"]),
            )
            if row["status"] in ("FAILED", "TIMED_OUT")
        ]
        return [step_failure_of(row) for row in rows]

    async def add_suite_baseline(self, baseline: SuiteBaseline) -> None:
        self._suite_baselines.append(
            {
                "workspace_id": baseline.workspace_id,
                "suite_name": baseline.suite_name,
                "run_id": baseline.run_id,
                "set_at": baseline.set_at,
                "set_by": baseline.set_by[:200],
            }
        )

    async def suite_baselines(self, workspace: str, suite: str) -> list[SuiteBaseline]:
        """The suite's baselines, newest first: the first is its baseline now."""
        return [
            suite_baseline_of(row)
            for row in reversed(self._suite_baselines)
            if (row["workspace_id"], row["suite_name"]) == (workspace, suite)
        ]

    # ---- executions ----------------------------------------------------------------------

    async def create_execution(
        self,
        execution: Execution,
        first_event: Event,
        fingerprint: str | None = None,
        activity: Activity | None = None,
    ) -> tuple[Execution, bool]:
        """(execution, True) once stored, with `activity`; (the earlier one, False) for a used
        idempotency key, writing nothing."""
        if execution.idempotency_key is not None:
            existing = self._by_idempotency_key(execution.workspace_id, execution.idempotency_key)
            if existing is not None:
                return execution_of(existing), False
        self._insert_executions([(execution, first_event, fingerprint)])
        if activity is not None:
            self.activities.append(activity)
        return execution, True

    @property
    def starts_announced(self) -> bool:
        """No bus here: the service publishes each start itself."""
        return False

    async def request_fingerprint(self, execution_id: str) -> str | None:
        row = self._executions.get(execution_id)
        return None if row is None else row["request_fingerprint"]

    async def execution(
        self, execution_id: str, *, workspace: str | None, with_steps: bool = True
    ) -> Execution | None:
        """The execution if it is in `workspace` (None: any workspace, for internal use)."""
        row = self._executions.get(execution_id)
        if row is None or (workspace is not None and row["workspace_id"] != workspace):
            return None
        return execution_of(row, self._steps(execution_id) if with_steps else ())

    async def transition(
        self, execution_id: str, decide: Decide, *, workspace: str
    ) -> list[Event] | None:
        """Append what `decide` returns, numbered after the last seq; None if a runner owns it."""
        row = self._executions.get(execution_id)
        if row is None or row["workspace_id"] != workspace:
            raise NotFound(f"execution {execution_id} not found")
        if row["owner"] is not None:
            return None
        events = _numbered(execution_of(row, self._steps(execution_id)), decide)
        if events:
            self._write_events(events)
        return events

    async def transition_many(
        self, execution_ids: Sequence[str], decide: Decide, *, workspace: str
    ) -> tuple[list[Event], list[Execution]]:
        """`transition` of each unowned one; (the events, the owned ones)."""
        events: list[Event] = []
        owned: list[Execution] = []
        for execution_id in sorted(set(execution_ids)):
            row = self._executions.get(execution_id)
            if row is None or row["workspace_id"] != workspace:
                continue
            if row["owner"] is not None:
                owned.append(execution_of(row, ()))
                continue
            try:
                found = _numbered(execution_of(row, self._steps(execution_id)), decide)
            except InvalidTransition:
                continue
            self._write_events(found)
            events.extend(found)
        return events, owned

    async def cancel_unowned(
        self,
        execution_ids: Sequence[str],
        statuses: Sequence[ExecutionStatus],
        error: str,
        *,
        workspace: str,
    ) -> list[Event]:
        """End as CANCELLED each unowned one in `statuses` with no step waiting for a review."""
        now = utc_now()
        events: list[Event] = []
        for execution_id in sorted(set(execution_ids)):
            row = self._executions.get(execution_id)
            if row is None or row["workspace_id"] != workspace or row["owner"] is not None:
                continue
            execution = execution_of(row, self._steps(execution_id))
            waiting = any(s.status is StepStatus.WAITING for s in execution.steps)
            if execution.status not in statuses or waiting:
                continue
            data = {
                "status": ExecutionStatus.CANCELLED,
                "error": error,
                "duration_ms": duration_between(execution.started_at, now),
            }
            event = Event(
                execution_id, execution.last_seq + 1, now, EventType.EXECUTION_STATUS, data
            )
            self._write_events([event])
            events.append(event)
        return events

    # ---- the event log -------------------------------------------------------------------

    async def append(self, events: Sequence[Event]) -> None:
        """Store numbered events and fold them into their rows, as the event log's writer does."""
        self._write_events(events)

    async def events(
        self, execution_id: str, after_seq: int, *, before_seq: int | None = None, limit: int = 1000
    ) -> list[Event]:
        """Events with after_seq < seq (< before_seq), in seq order, as they were stored."""
        found = [
            event
            for event in sorted(self._events.get(execution_id, ()), key=lambda e: e.seq)
            if event.seq > after_seq and (before_seq is None or event.seq < before_seq)
        ]
        return found[:limit]

    # ---- test hooks: a stand-in runner ---------------------------------------------------

    @property
    def execution_ids(self) -> tuple[str, ...]:
        """Every execution stored, in the order they were created."""
        return tuple(self._executions)

    def own(self, execution_id: str, owner: str) -> None:
        """Mark the execution claimed by runner `owner`, as ExecutionQueue.claim does."""
        row = self._executions[execution_id]
        row["owner"] = owner
        row["lease_generation"] += 1

    def release(self, execution_id: str) -> None:
        """Let go of the execution, as its runner does after it ends or pauses."""
        self._executions[execution_id]["owner"] = None

    def append_as_owner(
        self, execution_id: str, drafts: Sequence[EventDraft], *, owner: str
    ) -> list[Event]:
        """Write events as the runner that owns the execution does: next seqs, one timestamp."""
        row = self._executions[execution_id]
        assert row["owner"] == owner, f"{owner} does not own {execution_id} ({row['owner']} does)"
        events = _numbered(execution_of(row), lambda _: drafts)
        self._write_events(events)
        return events

    # ---- runners and the waiting queue ---------------------------------------------------

    async def record_runner(self, presence: RunnerPresence) -> None:
        before = self._runners.get(presence.id)
        started_at = before.started_at if before is not None else presence.started_at
        self._runners[presence.id] = replace(presence, started_at=started_at)

    async def remove_runner(self, runner_id: str) -> None:
        self._runners.pop(runner_id, None)

    async def forget_dead_runners(self, now: datetime) -> None:
        self._runners = {
            key: runner
            for key, runner in self._runners.items()
            if runner.alive_until >= now - timedelta(days=1)
        }

    async def runners(self, now: datetime) -> list[RunnerPresence]:
        alive = [runner for runner in self._runners.values() if runner.alive(now)]
        return sorted(alive, key=lambda runner: (runner.started_at, runner.id))

    async def waiting(self, workspace: str | None) -> Waiting:
        rows = [
            row
            for row in self._executions.values()
            if row["status"] == ExecutionStatus.QUEUED.value
            and row["owner"] is None
            and workspace in (None, row["workspace_id"])
        ]
        return Waiting(len(rows), min((row["queued_at"] for row in rows), default=None))

    # ---- batches -------------------------------------------------------------------------

    async def create_batch(
        self, batch: Batch, executions: Sequence[tuple[Execution, Event]]
    ) -> None:
        """The batch and every execution with its first event, all or none."""
        if batch.id in self._batches:
            raise DuplicateKey(f"batch {batch.id} exists")
        self._insert_executions([(execution, event, None) for execution, event in executions])
        self._batches[batch.id] = {
            "id": batch.id,
            "workspace_id": batch.workspace_id,
            "name": batch.name,
            "scenario_name": batch.scenario_name,
            "concurrency": batch.concurrency,
            "total": batch.total,
            "created_at": batch.created_at,
            "created_by": batch.created_by[:200],
            "stopped_at": None,
        }

    async def batch(self, batch_id: str, *, workspace: str) -> Batch | None:
        row = self._batches.get(batch_id)
        return batch_of(row) if row is not None and row["workspace_id"] == workspace else None

    async def unfinished_in_batch(self, batch_id: str) -> list[str]:
        rows = [
            row
            for row in self._executions.values()
            if row["batch_id"] == batch_id and not ExecutionStatus(row["status"]).is_terminal
        ]
        rows.sort(key=lambda row: (row["queued_at"], row["id"]), reverse=True)
        return [row["id"] for row in rows]

    async def mark_batch_stopped(self, batch_id: str) -> None:
        row = self._batches.get(batch_id)
        if row is not None and row["stopped_at"] is None:
            row["stopped_at"] = utc_now()

    # ---- control requests ----------------------------------------------------------------

    async def request_controls(
        self, execution_ids: Sequence[str], action: str, reason: str, actor: str
    ) -> None:
        for execution_id in execution_ids:
            await self.request_control(execution_id, action, reason, actor, None)

    async def request_control(
        self,
        execution_id: str,
        action: str,
        reason: str,
        actor: str,
        grace: float | None,
        step_key: str | None = None,
    ) -> None:
        self._controls.append(
            ControlRequest(
                next(self._control_ids), execution_id, action, reason, actor, grace, step_key
            )
        )

    async def pending_controls(self, owner: str) -> list[ControlRequest]:
        """Unhandled control requests for executions that `owner` runs, oldest first."""
        return [
            request
            for request in self._controls
            if request.id not in self._handled_controls
            and self._executions.get(request.execution_id, {}).get("owner") == owner
        ]

    async def mark_controls_handled(self, execution_id: str) -> None:
        self._handled_controls.update(
            request.id for request in self._controls if request.execution_id == execution_id
        )

    @property
    def control_requests(self) -> tuple[ControlRequest, ...]:
        """Every control request stored, handled or not, oldest first."""
        return tuple(self._controls)

    # ---- workspaces, tokens and members --------------------------------------------------

    async def create_workspace(self, organization: str, name: str) -> Workspace:
        """A new workspace, in the named organization; a test hook (the domain makes none)."""
        if await self.workspace(name) is not None:
            raise Invalid([FieldError("name", f"workspace {name} exists")])
        organization_id = self._organizations.setdefault(organization, f"org-{organization}")
        workspace = Workspace(f"ws-{len(self._workspaces) + 1}-{name}", organization_id, name)
        self._workspaces.append(workspace)
        return workspace

    async def workspace(self, id_or_name: str) -> Workspace | None:
        return next((w for w in self._workspaces if id_or_name in (w.id, w.name)), None)

    async def insert_token(self, token: ApiToken, secret_hash: str) -> None:
        if token.id in self._tokens or secret_hash in self._token_ids_by_hash:
            raise DuplicateKey(f"token {token.id} or its secret exists")
        # Only what the database inserts: a new token has never been used or revoked.
        self._tokens[token.id] = replace(
            token, created_by=token.created_by[:200], last_used_at=None, revoked_at=None
        )
        self._token_ids_by_hash[secret_hash] = token.id

    async def token_by_hash(self, secret_hash: str) -> ApiToken | None:
        token_id = self._token_ids_by_hash.get(secret_hash)
        return None if token_id is None else self._tokens[token_id]

    async def tokens(self, workspace: str) -> list[ApiToken]:
        found = [token for token in self._tokens.values() if token.workspace_id == workspace]
        return sorted(found, key=lambda token: (token.created_at, token.id))

    async def tokens_by_id(self, ids: Sequence[str]) -> dict[str, ApiToken]:
        return {token_id: self._tokens[token_id] for token_id in ids if token_id in self._tokens}

    async def revoke_token(self, workspace: str, token_id: str, at: datetime) -> ApiToken | None:
        """Revoke a token of the workspace (again is a no-op); None if it is not the workspace's."""
        token = self._tokens.get(token_id)
        if token is None or token.workspace_id != workspace:
            return None
        if token.revoked_at is None:
            token = self._tokens[token_id] = replace(token, revoked_at=at)
        return token

    async def touch_token(self, token_id: str, at: datetime) -> None:
        if token_id in self._tokens:
            self._tokens[token_id] = replace(self._tokens[token_id], last_used_at=at)

    async def put_member(self, member: Member) -> Member:
        """Add the member, or change its role (keeping when and by whom it was added)."""
        key = (member.workspace_id, member.subject)
        existing = self._members.get(key)
        if existing is not None:
            self._members[key] = replace(existing, role=member.role)
        else:
            self._members[key] = replace(member, created_by=member.created_by[:200])
        return self._members[key]

    async def remove_member(self, workspace: str, subject: str) -> bool:
        return self._members.pop((workspace, subject), None) is not None

    async def member(self, workspace: str, subject: str) -> Member | None:
        return self._members.get((workspace, subject))

    async def members(self, workspace: str) -> list[Member]:
        found = [m for (w, _), m in self._members.items() if w == workspace]
        return sorted(found, key=lambda member: member.subject)

    # ---- secrets -------------------------------------------------------------------------

    async def put_secret(
        self, workspace: str, name: str, value: str, actor: str, at: datetime
    ) -> SecretInfo:
        """Create or replace, keeping when it was first set, as the database's upsert does."""
        existing = self._secrets.get((workspace, name))
        created_at = at if existing is None else existing[0].created_at
        info = SecretInfo(name, created_at, at, actor[:200])
        self._secrets[(workspace, name)] = (info, value)
        return info

    async def delete_secret(self, workspace: str, name: str) -> bool:
        return self._secrets.pop((workspace, name), None) is not None

    async def secrets(self, workspace: str) -> list[SecretInfo]:
        found = [info for (w, _), (info, _) in self._secrets.items() if w == workspace]
        return sorted(found, key=lambda info: info.name)

    async def existing_secrets(self, workspace: str, names: Sequence[str]) -> set[str]:
        return {name for name in names if (workspace, name) in self._secrets}

    async def secret_values(self, workspace: str, names: Sequence[str]) -> dict[str, str]:
        return {
            name: self._secrets[(workspace, name)][1]
            for name in names
            if (workspace, name) in self._secrets
        }

    # ---- rows ----------------------------------------------------------------------------

    def _by_idempotency_key(self, workspace: str, key: str) -> Row | None:
        return next(
            (
                row
                for row in self._executions.values()
                if row["workspace_id"] == workspace and row["idempotency_key"] == key
            ),
            None,
        )

    def _insert_executions(self, rows: Sequence[tuple[Execution, Event, str | None]]) -> None:
        """Insert queued executions with their first events (not projected), all or none."""
        ids = [execution.id for execution, _, _ in rows]
        keys = [(e.workspace_id, e.idempotency_key) for e, _, _ in rows if e.idempotency_key]
        if len(set(ids)) < len(ids) or any(i in self._executions for i in ids):
            raise DuplicateKey(f"an execution id of {ids} exists")
        if len(set(keys)) < len(keys) or any(self._by_idempotency_key(*key) for key in keys):
            raise DuplicateKey(f"an idempotency key of {keys} is used")
        for execution, first_event, fingerprint in rows:
            self._executions[execution.id] = _execution_row(execution, first_event, fingerprint)
            self._events[execution.id] = [_stored_event(first_event)]
            self._step_runs[execution.id] = {}

    def _steps(self, execution_id: str) -> tuple[StepRun, ...]:
        rows = sorted(
            self._step_runs.get(execution_id, {}).values(),
            key=lambda row: (row["position"], row["attempt"]),
        )
        return tuple(step_run_of(row) for row in rows)

    def _write_events(self, events: Sequence[Event]) -> None:
        """Store events and fold them into execution and step rows, all or none."""
        seqs = [(event.execution_id, event.seq) for event in events]
        taken = {
            (stored.execution_id, stored.seq)
            for execution_id in {event.execution_id for event in events}
            for stored in self._events.get(execution_id, ())
        }
        if len(set(seqs)) < len(seqs) or taken.intersection(seqs):
            raise DuplicateKey(f"an event of {seqs} exists")
        for event in events:
            self._events.setdefault(event.execution_id, []).append(_stored_event(event))
        self._project(events)

    def _project(self, events: Sequence[Event]) -> None:
        """Fold a batch of events into rows exactly as runwire.db.projection's SQL does."""
        changes: dict[str, _ExecutionChange] = {}
        steps: dict[tuple[str, str, int], Row] = {}
        step_usage: list[tuple[str, str, int, UsageTotals]] = []
        for event in events:
            change = changes.setdefault(event.execution_id, _ExecutionChange())
            change.last_seq = max(change.last_seq, event.seq)
            if event.type is EventType.EXECUTION_STATUS:
                change.apply(event)
            elif event.type is EventType.STEP_STATUS:
                _fold_step(event, steps)
            elif event.type is EventType.USAGE:
                usage = reported(event.data)
                change.usage = change.usage.plus(usage)
                if event.step_key is not None and event.attempt is not None:
                    step_usage.append((event.execution_id, event.step_key, event.attempt, usage))
        for execution_id, change in changes.items():
            row = self._executions.get(execution_id)
            if row is not None:  # an UPDATE of no row changes nothing
                change.update(row)
        for (execution_id, key, attempt), step in steps.items():
            attempts = self._step_runs.setdefault(execution_id, {})
            stored = attempts.get((key, attempt))
            if stored is None:
                attempts[(key, attempt)] = step
                continue
            # ON CONFLICT: the status is replaced, every other column only by a non-null value;
            # kind and position stay as first inserted.
            stored["status"] = step["status"]
            for column in _COALESCED_STEP_COLUMNS:
                if step[column] is not None:
                    stored[column] = step[column]
        # After the upsert, as projection's UPDATE: an attempt with no row yet gets nothing.
        for execution_id, key, attempt, usage in step_usage:
            found = self._step_runs.get(execution_id, {}).get((key, attempt))
            if found is not None:
                _add_usage(found, usage)


_NO_USAGE: Row = {
    "usage_calls": 0,
    "usage_input": 0,
    "usage_output": 0,
    "usage_cached": 0,
    "usage_reasoning": 0,
    "usage_cost_usd": 0.0,
    "usage_unpriced": 0,
}


def _add_usage(row: Row, usage: UsageTotals) -> None:
    """What projection's `usage_x = usage_x + ?` does to a row."""
    for column, value in zip(
        _NO_USAGE,
        (
            usage.calls,
            usage.input,
            usage.output,
            usage.cached,
            usage.reasoning,
            usage.cost_usd,
            usage.unpriced,
        ),
        strict=True,
    ):
        row[column] += value


_COALESCED_STEP_COLUMNS = (
    "started_at",
    "finished_at",
    "exit_code",
    "output",
    "error",
    "assertions",
    "attributes",
)


@dataclass
class _ExecutionChange:
    """What one batch of events does to one execution row (the SQL UPDATE's parameters)."""

    last_seq: int = 0
    status: ExecutionStatus | None = None
    error: str | None = None
    started: datetime | None = None
    finished: datetime | None = None
    duration: int | None = None
    usage: UsageTotals = field(default_factory=UsageTotals)

    def apply(self, event: Event) -> None:
        # The latest status event decides error, end and duration; the first RUNNING the start.
        status = ExecutionStatus(event.data["status"])
        self.status = status
        self.error = event.data.get("error") or None
        if status is ExecutionStatus.RUNNING and self.started is None:
            self.started = event.at
        self.finished = event.at if status.is_terminal else None
        self.duration = event.data.get("duration_ms") if status.is_terminal else None

    def update(self, row: Row) -> None:
        row["last_seq"] = self.last_seq
        _add_usage(row, self.usage)
        if row["started_at"] is None:
            row["started_at"] = self.started
        if self.status is not None:
            row["status"] = self.status.value
            row["error"] = self.error
            row["finished_at"] = self.finished
            row["duration_ms"] = self.duration


def _fold_step(event: Event, steps: dict[tuple[str, str, int], Row]) -> None:
    """One step event into the attempt's row of this batch, as projection._project_step does."""
    assert event.step_key is not None
    assert event.attempt is not None
    data = event.data
    step = steps.setdefault(
        (event.execution_id, event.step_key, event.attempt),
        {
            "execution_id": event.execution_id,
            "key": event.step_key,
            "attempt": event.attempt,
            "kind": data.get("kind", ""),
            "position": data.get("position", 0),
            **dict.fromkeys(_COALESCED_STEP_COLUMNS),
            **_NO_USAGE,
        },
    )
    status = StepStatus(data["status"])
    step["status"] = status.value
    if status is StepStatus.RUNNING:
        step["started_at"] = event.at
    if status.is_terminal:
        step["finished_at"] = event.at
        step["exit_code"] = data.get("exit_code")
        step["error"] = data.get("error")
        for column in ("output", "assertions", "attributes"):
            step[column] = dump(data[column]) if column in data else None


def _numbered(execution: Execution, decide: Decide) -> list[Event]:
    """`decide`'s drafts as events after the execution's last seq, all at one instant."""
    now, after = utc_now(), execution.last_seq
    return [
        Event(execution.id, after + n, now, d.type, d.data, d.step_key, d.attempt)
        for n, d in enumerate(decide(execution), 1)
    ]


def _stored_event(event: Event) -> Event:
    """The event as the log reads it back: its data through JSON."""
    return event_of(
        {
            "execution_id": event.execution_id,
            "seq": event.seq,
            "at": event.at,
            "type": event.type.value,
            "step_key": event.step_key,
            "attempt": event.attempt,
            "data": dump(event.data),
        }
    )


def _execution_row(execution: Execution, first_event: Event, fingerprint: str | None) -> Row:
    """The columns a queued execution is inserted with; the rest come from its events."""
    caller = execution.trace_context
    return {
        "id": execution.id,
        "workspace_id": execution.workspace_id,
        "name": execution.name[:100],
        "status": execution.status.value,
        "scenario_name": execution.scenario_name,
        "scenario_version": execution.scenario_version,
        "definition": dump(execution.definition),
        "inputs": dump(execution.inputs),
        "labels": dump(list(execution.labels)),
        "priority": execution.priority,
        "timeout_seconds": execution.timeout_seconds,
        "grace_seconds": execution.grace_seconds,
        "queued_at": execution.queued_at,
        "started_at": None,
        "finished_at": None,
        "error": None,
        "last_seq": first_event.seq,
        "owner": None,
        "lease_generation": 0,
        "created_by": execution.triggered_by[:200],
        "mode": execution.mode.value,
        "step_key": execution.step_key,
        "upstream": None if execution.upstream is None else dump(execution.upstream),
        "idempotency_key": execution.idempotency_key,
        "request_fingerprint": fingerprint,
        "concurrency_key": execution.concurrency_key,
        "concurrency_limit": execution.concurrency_limit,
        "batch_id": execution.batch_id,
        "batch_limit": execution.batch_limit,
        "trigger_type": execution.trigger_type.value,
        "duration_ms": None,
        **_NO_USAGE,
        "trace_parent": None if caller is None else caller.traceparent,
        "trace_state": None if caller is None else caller.state,
    }


class EventsPublished:
    """An EventPublisher that records each batch of events it is given."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []

    async def publish(self, events: Sequence[Event]) -> None:
        self.batches.append(list(events))

    def deliver_here(self, events: Sequence[Event]) -> None:
        self.batches.append(list(events))

    @property
    def events(self) -> list[Event]:
        """Every event published, in the order given."""
        return [event for batch in self.batches for event in batch]


class SignalsSent:
    """WorkSignals that count `queued()` and list `control_requested()` ids.

    `on_control_requested`, when set, is called with the id, so a test can act as the owning
    runner answering the request before the service looks for the change.
    """

    def __init__(self) -> None:
        self.queued_count = 0
        self.control_requested_for: list[str] = []
        self.on_control_requested: Callable[[str], None] | None = None

    def queued(self) -> None:
        self.queued_count += 1

    def queued_here(self) -> None:
        self.queued_count += 1

    def control_requested(self, execution_id: str) -> None:
        self.control_requested_for.append(execution_id)
        if self.on_control_requested is not None:
            self.on_control_requested(execution_id)
