"""A test-only step kind that reports a given agent transcript and usage through the real
StepContext, so the API and clients see AGENT_ENTRY and USAGE events from a real runner before
(and independently of) the `llm` and `agent` kinds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runwire.domain.agents import AgentEntry, EntryType, Usage
from runwire.errors import InvalidDefinition
from runwire.runner.steps.base import Observed, StepContext, StepResult


@dataclass(frozen=True, slots=True)
class Transcript:
    """What to report, in order: each item an AgentEntry or a Usage."""

    items: tuple[AgentEntry | Usage, ...]


class TranscriptStep:
    """`kind: transcript`, `with: {report: [{entry: TOOL_CALL, tool: …}, {usage: {…}}, …]}`."""

    name = "transcript"
    runs_processes = False

    def parse(self, params: Any, path: str) -> Transcript:
        report = params.get("report") if isinstance(params, Mapping) else None
        if not isinstance(report, list):
            raise InvalidDefinition(f"{path}.report: expected a list of entries and usages")
        return Transcript(
            tuple(_item(item, f"{path}.report[{i}]") for i, item in enumerate(report))
        )

    def idempotent(self, params: Transcript) -> bool:
        return True

    async def run(self, params: Transcript, context: StepContext) -> StepResult:
        for item in params.items:
            if isinstance(item, AgentEntry):
                context.entry(item)
            else:
                context.usage(item)
        return StepResult(output={"reported": len(params.items)}, observed=Observed())


def _item(item: Any, path: str) -> AgentEntry | Usage:
    if not isinstance(item, Mapping):
        raise InvalidDefinition(f"{path}: expected a mapping")
    if "usage" in item:
        usage = dict(item["usage"])
        return Usage(
            model=usage.get("model"),
            input=int(usage["input"]),
            output=int(usage["output"]),
            cached=int(usage.get("cached", 0)),
            reasoning=int(usage.get("reasoning", 0)),
            cost_usd=usage.get("cost_usd"),
            ttft_ms=usage.get("ttft_ms"),
            duration_ms=usage.get("duration_ms"),
        )
    return AgentEntry(
        type=EntryType(item["entry"]),
        text=item.get("text"),
        tool=item.get("tool"),
        call_id=item.get("call_id"),
        is_error=bool(item.get("is_error", False)),
        data=dict(item.get("data") or {}),
    )
