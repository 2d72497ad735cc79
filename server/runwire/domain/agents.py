"""What agent and LLM steps report as they run: transcript entries, token usage, cost, budgets.

An *entry* is one typed piece of an agent's transcript (its start, a piece of assistant text, a
tool call and its result, the final result). A *usage* is what one model call (or one agent run)
consumed. The runner turns both into events, sums usage per step and per execution, prices it with
the price table and stops whatever crosses a budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EntryType(StrEnum):
    """The kinds of transcript entry every agent format is parsed into."""

    INIT = "INIT"
    ASSISTANT_TEXT = "ASSISTANT_TEXT"
    TOOL_CALL = "TOOL_CALL"
    TOOL_RESULT = "TOOL_RESULT"
    RESULT = "RESULT"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class AgentEntry:
    """One transcript entry; `data` keeps what the format said beyond the typed fields.

    INIT: `data` has the session, model and tools. ASSISTANT_TEXT: `text`. TOOL_CALL: `tool`,
    `call_id`, `data["input"]`. TOOL_RESULT: `call_id`, `text` (the output), `is_error`.
    RESULT: `text` (the final answer), `is_error`, `data` with outcome, turns, duration_ms.
    UNKNOWN: `data["raw"]`, the line as it came.
    """

    type: EntryType
    text: str | None = None
    tool: str | None = None
    call_id: str | None = None
    is_error: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)

    def event_data(self) -> dict[str, Any]:
        """The AGENT_ENTRY event's data: only the fields that are set."""
        data: dict[str, Any] = {"entry": self.type.value}
        if self.text is not None:
            data["text"] = self.text
        if self.tool is not None:
            data["tool"] = self.tool
        if self.call_id is not None:
            data["call_id"] = self.call_id
        if self.is_error:
            data["is_error"] = True
        if self.data:
            data["data"] = dict(self.data)
        return data


@dataclass(frozen=True, slots=True)
class Usage:
    """What one model call or one agent run consumed, as it reported it.

    `cost_usd` is the cost the source itself reported (an agent's `total_cost_usd`); None means
    the runner prices the tokens with its price table. Token counts the source did not give are 0,
    except `input`/`output`, which every source gives.
    """

    model: str | None
    input: int
    output: int
    cached: int = 0
    reasoning: int = 0
    cost_usd: float | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None

    @property
    def tokens(self) -> int:
        return self.input + self.output

    @property
    def tokens_per_second(self) -> float | None:
        """Output tokens per second of generation (after the first token, when it is known)."""
        if self.duration_ms is None:
            return None
        generating = self.duration_ms - (self.ttft_ms or 0.0)
        if generating <= 0 or self.output <= 0:
            return None
        return self.output / (generating / 1000.0)


@dataclass(frozen=True, slots=True)
class Priced:
    """A usage with its cost: `cost_usd` None when its model has no price (`unpriced` says why)."""

    usage: Usage
    cost_usd: float | None
    price_source: str | None = None
    unpriced: str | None = None


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Usage summed; `cost_usd` sums what was priced, `unpriced` counts what could not be."""

    calls: int = 0
    input: int = 0
    output: int = 0
    cached: int = 0
    reasoning: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0

    @property
    def tokens(self) -> int:
        return self.input + self.output

    @property
    def cost_known(self) -> float | None:
        """The total cost, or None while any usage in it has no price (never a partial 0)."""
        return None if self.unpriced else self.cost_usd

    def add(self, priced: Priced) -> UsageTotals:
        usage = priced.usage
        return UsageTotals(
            calls=self.calls + 1,
            input=self.input + usage.input,
            output=self.output + usage.output,
            cached=self.cached + usage.cached,
            reasoning=self.reasoning + usage.reasoning,
            cost_usd=math.fsum((self.cost_usd, priced.cost_usd or 0.0)),
            unpriced=self.unpriced + (priced.cost_usd is None),
        )

    def plus(self, other: UsageTotals) -> UsageTotals:
        """Two sums as one (a step's attempts, an execution's steps)."""
        return UsageTotals(
            calls=self.calls + other.calls,
            input=self.input + other.input,
            output=self.output + other.output,
            cached=self.cached + other.cached,
            reasoning=self.reasoning + other.reasoning,
            cost_usd=math.fsum((self.cost_usd, other.cost_usd)),
            unpriced=self.unpriced + other.unpriced,
        )

    def as_data(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "tokens_input": self.input,
            "tokens_output": self.output,
            "tokens_cached": self.cached,
            "tokens_reasoning": self.reasoning,
            "cost_usd": self.cost_known,
            "unpriced": self.unpriced,
        }


def reported(data: Mapping[str, Any]) -> UsageTotals:
    """The usage one USAGE event reports, as totals of one call (its cost null: unpriced)."""
    cost = data.get("cost_usd")
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        cost = None
    return UsageTotals(
        calls=1,
        input=_count(data.get("tokens_input")),
        output=_count(data.get("tokens_output")),
        cached=_count(data.get("tokens_cached")),
        reasoning=_count(data.get("tokens_reasoning")),
        cost_usd=0.0 if cost is None else float(cost),
        unpriced=int(cost is None),
    )


def _count(value: Any) -> int:
    """A token count as stored; anything but a whole number (a defect upstream) counts 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
