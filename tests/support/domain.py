"""The domain's real services wired to a MemoryStore, actors of two workspaces, and event drafts.

Unit tests of the rules build a `Domain` per test: milliseconds, no database, no server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.support.memory_store import EventsPublished, MemoryStore, SignalsSent

from runwire.domain.access import Actor, Role
from runwire.domain.batches import BatchService
from runwire.domain.control import ExecutionControl
from runwire.domain.executions import ExecutionService
from runwire.domain.models import EventDraft, EventType, Execution, ExecutionStatus, StepStatus
from runwire.domain.scenarios import ScenarioService
from runwire.domain.suites import SuiteService
from runwire.domain.tokens import TokenService
from runwire.runner.steps import STEP_KINDS
from runwire.scenarios.definition import ParamsParser

WORKSPACE = "workspace-a"
OTHER_WORKSPACE = "workspace-b"
OPERATOR = Actor(workspace_id=WORKSPACE, label="token:ci", role=Role.OPERATOR)
EDITOR = Actor(workspace_id=WORKSPACE, label="user:editor", role=Role.EDITOR)
ADMIN = Actor(workspace_id=WORKSPACE, label="token:root", role=Role.ADMIN)
OUTSIDER = Actor(workspace_id=OTHER_WORKSPACE, label="token:elsewhere", role=Role.ADMIN)
RUNNER = "runner-1"


@dataclass(frozen=True, slots=True)
class Domain:
    """Every service on one MemoryStore, with the recorders they publish and signal to."""

    store: MemoryStore
    published: EventsPublished
    signals: SignalsSent
    scenarios: ScenarioService
    executions: ExecutionService
    control: ExecutionControl
    batches: BatchService
    tokens: TokenService
    suites: SuiteService

    @classmethod
    def in_memory(cls, kinds: Mapping[str, ParamsParser] = STEP_KINDS) -> Domain:
        """Wired as runwire.core wires the database stores, with the shipped step kinds."""
        store = MemoryStore()
        published = EventsPublished()
        signals = SignalsSent()
        scenarios = ScenarioService(store, kinds)
        executions = ExecutionService(store, scenarios, published, signals, store)
        control = ExecutionControl(store, store, kinds, published, signals)
        return cls(
            store=store,
            published=published,
            signals=signals,
            scenarios=scenarios,
            executions=executions,
            control=control,
            batches=BatchService(store, scenarios, executions, control, published, signals),
            tokens=TokenService(store),
            suites=SuiteService(store, store, scenarios, executions, store, published, signals),
        )

    def assert_nothing_queued(self) -> None:
        """No execution stored, no event published, no runner woken."""
        assert self.store.execution_ids == ()
        assert self.published.batches == []
        assert self.signals.queued_count == 0

    async def read(self, execution_id: str) -> Execution:
        """The execution as stored in the tests' workspace, with its step attempts."""
        found = await self.store.execution(execution_id, workspace=WORKSPACE)
        assert found is not None, f"execution {execution_id} is not in {WORKSPACE}"
        return found

    def run(self, execution_id: str, *drafts: EventDraft, release: bool = True) -> None:
        """Act as a runner: claim the execution, write `drafts`, and (unless told) let it go."""
        self.store.own(execution_id, RUNNER)
        self.store.append_as_owner(execution_id, drafts, owner=RUNNER)
        if release:
            self.store.release(execution_id)

    def answer_controls(self, *drafts: EventDraft, after: float = 0.0) -> None:
        """Act as the owning runner: answer each control request by writing `drafts`, at once
        or `after` seconds (the service must then wait for the answer, polling)."""

        def apply(execution_id: str) -> None:
            self.store.append_as_owner(execution_id, drafts, owner=RUNNER)

        def signalled(execution_id: str) -> None:
            if after:
                asyncio.get_running_loop().call_later(after, apply, execution_id)
            else:
                apply(execution_id)

        self.signals.on_control_requested = signalled


def status_changed(status: ExecutionStatus, **data: Any) -> EventDraft:
    """An execution status event, as the runner or a transition writes it."""
    return EventDraft(EventType.EXECUTION_STATUS, {"status": status, **data})


def step_changed(
    key: str, status: StepStatus, attempt: int, *, position: int = 0, **data: Any
) -> EventDraft:
    """A step status event of a shell step, as the runner writes it."""
    payload = {"status": status, "kind": "shell", "position": position, **data}
    return EventDraft(EventType.STEP_STATUS, payload, key, attempt)
