"""The one small protocol every step kind implements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class StepResult:
    """How a step ended: `error is None` means it succeeded."""

    output: Any = None
    error: str | None = None
    exit_code: int | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


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
