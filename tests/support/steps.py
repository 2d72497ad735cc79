"""A StepContext for driving step kinds directly in tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from runwire.domain.agents import AgentEntry, Priced, Usage
from runwire.domain.calls import CallEvent
from runwire.domain.models import OutputStream
from runwire.runner.pricing import PriceTable
from runwire.runner.spans import span_event_data
from runwire.runner.steps import step_kinds
from runwire.settings import Settings

# The shipped kinds with steps run as the test's own user: as root (CI), the default `nobody`
# could not read pytest's tmp_path (0700) or run this venv's Python. Why, and where the default
# is tested: OWN_USER_STEPS in tests/support/server.py.
OWN_USER_KINDS = step_kinds(Settings(step_user=""))
PRICES = PriceTable.load()


@dataclass
class RecordingContext:
    """A StepContext that records every output call, entry, usage and span reported.

    `timeline` holds them all in the order the step reported them: ("output", stream, text),
    ("entry", AgentEntry), ("usage", Priced), ("span", data), ("call", CallEvent).
    """

    grace_seconds: float = 0.5
    execution_id: str = "ex-1"
    step_key: str = "step"
    attempt: int = 1
    secrets: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[OutputStream, str]] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[tuple[Any, ...]] = field(default_factory=list)
    # name -> (media type, content), as last stored.
    artifacts: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    # Set while the step must not read on (its events are behind): see `backlogged`, `room`.
    backlog: asyncio.Event = field(default_factory=asyncio.Event)

    def output(self, stream: OutputStream, text: str) -> None:
        self.calls.append((stream, text))
        self.timeline.append(("output", stream, text))

    def entry(self, entry: AgentEntry) -> None:
        self.timeline.append(("entry", entry))

    def call(self, event: CallEvent) -> None:
        self.timeline.append(("call", event))

    @property
    def call_events(self) -> list[CallEvent]:
        return [item[1] for item in self.timeline if item[0] == "call"]

    def usage(self, usage: Usage) -> Priced:
        priced = PRICES.price(usage)
        self.timeline.append(("usage", priced))
        return priced

    @property
    def entries(self) -> list[AgentEntry]:
        return [item[1] for item in self.timeline if item[0] == "entry"]

    @property
    def usages(self) -> list[Priced]:
        return [item[1] for item in self.timeline if item[0] == "usage"]

    async def artifact(self, name: str, media_type: str, content: bytes) -> None:
        self.artifacts[name] = (media_type, content)
        self.timeline.append(("artifact", name, media_type, content))

    def backlogged(self) -> bool:
        return self.backlog.is_set()

    async def room(self) -> None:
        while self.backlog.is_set():
            await asyncio.sleep(0.01)

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
        data = span_event_data(
            name, kind, started_at, finished_at, status, attributes, parent_id, span_id
        )
        self.spans.append(data)
        self.timeline.append(("span", data))
        return str(data["span_id"])

    def text(self, stream: OutputStream) -> str:
        return "".join(text for s, text in self.calls if s is stream)


async def wait_for(predicate: Any, seconds: float = 5.0) -> None:
    """Until `predicate()` holds; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def running(pid: int) -> bool:
    """Whether `pid` is a live process; zombies awaiting a reaper count as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
