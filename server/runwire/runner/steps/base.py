"""The one small protocol every step kind implements."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar

from runwire.domain.agents import AgentEntry, Priced, Usage
from runwire.domain.calls import CallEvent
from runwire.domain.models import OutputStream
from runwire.scenarios.results import Observed, StepResult

__all__ = ["Observed", "StepContext", "StepKind", "StepResult"]


class StepContext(Protocol):
    """What a running step may use from the runner."""

    @property
    def execution_id(self) -> str: ...

    @property
    def step_key(self) -> str: ...

    @property
    def attempt(self) -> int: ...

    @property
    def grace_seconds(self) -> float:
        """How long a stopped step may take to exit after SIGINT before it is killed."""
        ...

    @property
    def secrets(self) -> Mapping[str, str]:
        """The values of the workspace secrets this step declared, by name.

        A step that runs a process puts them in its environment and nowhere else; the runner
        redacts their values from what the step reports.
        """
        ...

    def output(self, stream: OutputStream, text: str) -> None:
        """Record a piece of output; the runner coalesces pieces into chunk events."""
        ...

    def entry(self, entry: AgentEntry) -> None:
        """Record one typed transcript entry (an AGENT_ENTRY event, after the output so far)."""
        ...

    def call(self, event: CallEvent) -> None:
        """Record one moment of a phone call (a CALL event, after the output so far)."""
        ...

    def usage(self, usage: Usage) -> Priced:
        """Record what a model call or agent run consumed; its cost as priced.

        The runner adds it to the step's and the execution's totals (a USAGE event carries both)
        and, when a budget is crossed, cancels the step, which then fails with the figures.
        """
        ...

    async def artifact(self, name: str, media_type: str, content: bytes) -> None:
        """Keep a file of this attempt (a recording, a transcript, a report), stored when this
        returns; the same name again replaces it. InvalidArtifact for a bad name or media type,
        or content over RUNWIRE_ARTIFACT_MAX_BYTES (domain/artifacts.py). Text content has the
        step's secret values masked, as its output does.
        """
        ...

    def backlogged(self) -> bool:
        """Whether this execution's events are too far ahead of the database: stop reading."""
        ...

    async def room(self) -> None:
        """Wait until the events have caught up enough to read on."""
        ...

    def span(
        self,
        name: str,
        kind: str,
        started_at: datetime,
        finished_at: datetime,
        status: str,
        attributes: Mapping[str, Any],
        parent_id: str | None = None,
        span_id: str | None = None,
    ) -> str:
        """Report a finished sub-operation (an HTTP phase, an LLM or tool call); its span id.

        The runner emits EventType.SPAN with `runner.spans.span_event_data(...)`. `parent_id`
        None hangs it under this step attempt. To nest, mint the parent's id first with
        `runner.spans.new_span_id()`, report the children, then the parent with `span_id`.
        Token and cost figures go in `attributes` as `tokens_input`, `tokens_output`, `cost_usd`.
        """
        ...


P = TypeVar("P")


class StepKind(Protocol[P]):
    """A kind of step (`shell`, `http`, `sleep`, …).

    A kind that runs no process says so with a class attribute `runs_processes = False`; any
    other is taken to run commands, so starting it inline needs `scenario:write`.
    """

    name: str

    def parse(self, params: Any, path: str) -> P:
        """Check the step's `with` mapping, raising InvalidDefinition naming `path.field`."""
        ...

    def idempotent(self, params: P) -> bool:
        """Whether running it twice is as running it once (then retried when its runner is lost)."""
        ...

    async def run(self, params: P, context: StepContext) -> StepResult:
        """Run the step. On cancellation, clean up (stop processes) and re-raise."""
        ...
