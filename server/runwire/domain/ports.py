"""What the domain's services need from the rest of the system, as small named Protocols.

The database stores in `runwire.db` and `runwire.queue` implement the store ports; the event
publisher and the queue's signals implement the other two; `tests/support/memory_store.py`
implements them all in memory, so the domain's rules are tested without a database or a server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from runwire.domain.models import (
    Activity,
    Batch,
    CallFigures,
    Event,
    EventDraft,
    Execution,
    ExecutionStatus,
    RepeatOutcome,
    ScenarioVersion,
    SecretInfo,
    StepFailure,
    SuiteBaseline,
    SuiteRun,
    SuiteRunMember,
    SuiteRunTotals,
    SuiteVersion,
)

Decide = Callable[[Execution], Sequence[EventDraft]]
"""Given an execution as stored (locked, with its step attempts), the events to append to it."""


class ScenarioStore(Protocol):
    """Saved scenarios, by workspace and name, each save a new version."""

    async def save_scenario(
        self,
        workspace: str,
        name: str,
        description: str,
        definition: Mapping[str, Any],
        actor: str,
    ) -> ScenarioVersion:
        """The next version of `name`; the latest one unchanged if the definition equals it."""
        ...

    async def latest_scenario(self, workspace: str, name: str) -> ScenarioVersion | None: ...


class SuiteStore(Protocol):
    """Saved suites, by workspace and name, each save a new version."""

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
        ...

    async def latest_suite(self, workspace: str, name: str) -> SuiteVersion | None: ...

    async def suite_version(
        self, workspace: str, name: str, version: int
    ) -> SuiteVersion | None: ...


class SuiteRunStore(Protocol):
    """Suite runs: a batch whose executions are tied to the cases and repeats they run."""

    async def create_suite_run(
        self,
        run: SuiteRun,
        batch: Batch,
        executions: Sequence[tuple[Execution, Event]],
        members: Sequence[SuiteRunMember],
        fingerprint: str | None = None,
    ) -> tuple[SuiteRun, bool]:
        """The run, its batch, every execution with its first event and its member row; all
        or none: (run, True) once stored; (the earlier run, False) for a used idempotency key,
        decided by a unique index under concurrent starts."""
        ...

    async def suite_run_fingerprint(self, run_id: str) -> str | None:
        """What the run was asked for, when it was started with an idempotency key."""
        ...

    async def suite_run_by_key(self, workspace: str, key: str) -> SuiteRun | None:
        """The run started earlier in `workspace` with idempotency key `key`."""
        ...

    async def add_suite_run_attempts(
        self,
        run: SuiteRun,
        executions: Sequence[tuple[Execution, Event]],
        members: Sequence[SuiteRunMember],
    ) -> None:
        """More executions of the run's batch (retries), with their member rows; the batch's
        total grows by as many. All or none."""
        ...

    async def suite_run(self, run_id: str, *, workspace: str) -> SuiteRun | None: ...

    async def suite_run_outcomes(self, run_id: str) -> list[RepeatOutcome]:
        """Every execution of the run, as it stands now."""
        ...

    async def suite_run_failures(self, run_id: str) -> list[StepFailure]:
        """The failed and timed-out step attempts of the run's executions."""
        ...

    async def suite_run_call_figures(self, run_id: str) -> list[CallFigures]:
        """What the ended `call` step attempts of the run's executions measured."""
        ...

    async def suite_runs(self, workspace: str, suite: str, limit: int) -> list[SuiteRun]:
        """The suite's runs, newest first."""
        ...

    async def suite_run_totals(self, run_ids: Sequence[str]) -> dict[str, SuiteRunTotals]:
        """Each run summed over the latest attempt of each repeat."""
        ...

    async def add_suite_baseline(self, baseline: SuiteBaseline) -> None: ...

    async def suite_baselines(self, workspace: str, suite: str) -> list[SuiteBaseline]:
        """The suite's baselines, newest first: the first is its baseline now."""
        ...


class ExecutionStore(Protocol):
    """Executions: created queued with their first event; changed by transitions when unowned."""

    async def create_execution(
        self,
        execution: Execution,
        first_event: Event,
        fingerprint: str | None = None,
        activity: Activity | None = None,
    ) -> tuple[Execution, bool]:
        """(execution, True) once stored, with `activity` in the same transaction; (the earlier
        one, False) for a used idempotency key, writing nothing."""
        ...

    @property
    def starts_announced(self) -> bool:
        """Whether `create_execution` announces a stored start on the bus itself, at its commit
        (then only this process's followers and runners are left to tell)."""
        ...

    async def request_fingerprint(self, execution_id: str) -> str | None: ...

    async def execution(
        self, execution_id: str, *, workspace: str | None, with_steps: bool = True
    ) -> Execution | None:
        """The execution if it is in `workspace` (None: any workspace, for internal use)."""
        ...

    async def transition(
        self, execution_id: str, decide: Decide, *, workspace: str
    ) -> list[Event] | None:
        """Append what `decide` returns, numbered after the last seq; None if a runner owns it.

        NotFound when the execution is not in `workspace`.
        """
        ...

    async def transition_many(
        self, execution_ids: Sequence[str], decide: Decide, *, workspace: str
    ) -> tuple[list[Event], list[Execution]]:
        """`transition` of many unowned executions in one transaction: (the events, the ones a
        runner owns, unchanged and without steps). Ones `decide` refuses (InvalidTransition)
        stay as they are."""
        ...

    async def cancel_unowned(
        self,
        execution_ids: Sequence[str],
        statuses: Sequence[ExecutionStatus],
        error: str,
        *,
        workspace: str,
    ) -> list[Event]:
        """End as CANCELLED (with `error`, as `transition` of a stop would) each one no runner
        holds, in `statuses`, with no step waiting for a review, in one transaction that does
        not read the rows whole; their status events. The others stay as they are."""
        ...


class BatchStore(Protocol):
    """Batches and the executions they queued together."""

    async def create_batch(
        self, batch: Batch, executions: Sequence[tuple[Execution, Event]]
    ) -> None:
        """The batch and every execution with its first event, all or none."""
        ...

    async def batch(self, batch_id: str, *, workspace: str) -> Batch | None: ...

    async def unfinished_in_batch(self, batch_id: str) -> list[str]: ...

    async def mark_batch_stopped(self, batch_id: str) -> None: ...


class ControlRequests(Protocol):
    """Requests to the runner that owns an execution; it applies them in its own time."""

    async def request_control(
        self,
        execution_id: str,
        action: str,
        reason: str,
        actor: str,
        grace: float | None,
        step_key: str | None = None,
    ) -> None: ...

    async def request_controls(
        self, execution_ids: Sequence[str], action: str, reason: str, actor: str
    ) -> None:
        """The same request for each of `execution_ids`, in one statement."""
        ...


class SecretStore(Protocol):
    """Workspace secrets by name; values leave only through `secret_values`, for the runner."""

    async def put_secret(
        self, workspace: str, name: str, value: str, actor: str, at: datetime
    ) -> SecretInfo:
        """Create or replace; `created_at` stays that of the first set."""
        ...

    async def delete_secret(self, workspace: str, name: str) -> bool: ...

    async def secrets(self, workspace: str) -> list[SecretInfo]:
        """By name, without values."""
        ...

    async def existing_secrets(self, workspace: str, names: Sequence[str]) -> set[str]: ...

    async def secret_values(self, workspace: str, names: Sequence[str]) -> dict[str, str]:
        """The values of those of `names` the workspace has."""
        ...


class StartAudit(Protocol):
    """The audit record of one start, written in the start's own transaction."""

    def activity(self, execution: Execution) -> Activity:
        """The record of starting `execution`, as it will be stored."""
        ...

    def stored(self) -> None:
        """The record was stored with the execution: nothing is left to record."""
        ...


class EventPublisher(Protocol):
    """Where stored events go, so every subscriber (in any process) learns of them."""

    async def publish(self, events: Sequence[Event]) -> None: ...

    def deliver_here(self, events: Sequence[Event]) -> None:
        """Events whose bus notices the store sent with them: this process's followers only."""
        ...


class WorkSignals(Protocol):
    """Wake-ups for runners, wherever they are; what to do is read from the stores."""

    def queued(self) -> None:
        """An execution was queued or requeued."""
        ...

    def queued_here(self) -> None:
        """Queued work the store announced on the bus itself: wake this process's runners."""
        ...

    def control_requested(self, execution_id: str) -> None:
        """A control request for the execution was stored."""
        ...
