"""A StepContext for driving step kinds directly in tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from runwire.domain.models import OutputStream


@dataclass
class RecordingContext:
    """A StepContext that records every output call."""

    grace_seconds: float = 0.5
    execution_id: str = "ex-1"
    step_key: str = "step"
    attempt: int = 1
    calls: list[tuple[OutputStream, str]] = field(default_factory=list)

    def output(self, stream: OutputStream, text: str) -> None:
        self.calls.append((stream, text))

    def text(self, stream: OutputStream) -> str:
        return "".join(text for s, text in self.calls if s is stream)
