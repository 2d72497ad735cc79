"""The one small protocol every step kind implements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from runwire.domain.models import OutputStream


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

    def output(self, stream: OutputStream, text: str) -> None:
        """Record a piece of output; the runner coalesces pieces into chunk events."""
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


@dataclass(frozen=True, slots=True)
class Observed:
    """What a completed step showed, for its `expect:` assertions to check; not stored."""

    exit_code: int | None = None
    status: int | None = None
    latency_ms: float | None = None
    text: str | None = None
    """What output_contains, output_matches and json check: stdout, or the response body."""


@dataclass(frozen=True, slots=True)
class StepResult:
    """How a step ended: `error is None` means it succeeded.

    A kind sets `error` only when the step could not complete (could not start or connect, timed
    out). Whether a completed step passed — exit code, status, `expect:` — is decided afterwards
    by `runwire.scenarios.expectations.assess` from `observed`.
    """

    output: Any = None
    error: str | None = None
    exit_code: int | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    observed: Observed | None = None


P = TypeVar("P")


class StepKind(Protocol[P]):
    """A kind of step (`shell`, `http`, `sleep`, …)."""

    name: str

    def parse(self, params: Any, path: str) -> P:
        """Check the step's `with` mapping, raising InvalidDefinition naming `path.field`."""
        ...

    async def run(self, params: P, context: StepContext) -> StepResult:
        """Run the step. On cancellation, clean up (stop processes) and re-raise."""
        ...
