"""One execution's token and cost accounts: per step (over its attempts) and in all, with budgets.

The runner records each usage a step reports here: it is priced, added to the step's attempt, the
step and the execution, and checked against the step's and the definition's budgets. A run that
resumes (after a pause, a takeover) starts from the totals its stored step attempts carry (kept
up to date from USAGE events as they are stored, see db/projection.py), so a budget holds across
runners.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runwire.domain.agents import Priced, Usage, UsageTotals
from runwire.domain.models import StepRun
from runwire.domain.trace import COST_USD, TOKENS_INPUT, TOKENS_OUTPUT, USAGE_UNPRICED
from runwire.runner.pricing import PriceTable
from runwire.scenarios.budgets import Budget

# Step attempt attributes (stored with the attempt; the trace sums tokens_input, tokens_output
# and cost_usd). cost_usd is left out while any usage of the attempt has no price.
TOKENS_CACHED = "tokens_cached"
TOKENS_REASONING = "tokens_reasoning"
USAGE_CALLS = "usage_calls"
USAGE_PRICED_USD = "usage_priced_usd"  # the cost of what was priced, complete or not


@dataclass(frozen=True, slots=True)
class Recorded:
    """A usage as recorded: the USAGE event's data, and the budget it crossed, if one."""

    priced: Priced
    event_data: dict[str, Any]
    step_over_budget: str | None
    execution_over_budget: str | None


class UsageLedger:
    def __init__(
        self, prices: PriceTable, budget: Budget, stored_attempts: Iterable[StepRun] = ()
    ) -> None:
        self._prices = prices
        self._budget = budget
        self._steps: dict[str, UsageTotals] = {}
        self.total = UsageTotals()
        for attempt in stored_attempts:
            # The row's running totals first: an attempt whose runner was lost mid-call never
            # wrote the attributes of its end, and what it consumed still counts.
            stored = attempt.usage if attempt.usage.calls else totals_of(attempt.attributes or {})
            if stored.calls:
                self._steps[attempt.key] = self.step(attempt.key).plus(stored)
                self.total = self.total.plus(stored)

    def step(self, key: str) -> UsageTotals:
        return self._steps.get(key, UsageTotals())

    def record(
        self, step_key: str, step_budget: Budget, attempt: UsageTotals, usage: Usage
    ) -> tuple[UsageTotals, Recorded]:
        """Price `usage` and add it; the attempt's new totals and what to report."""
        priced = self._prices.price(usage)
        attempt = attempt.add(priced)
        step = self._steps[step_key] = self.step(step_key).add(priced)
        self.total = self.total.add(priced)
        data: dict[str, Any] = {
            "model": usage.model,
            "tokens_input": usage.input,
            "tokens_output": usage.output,
            "tokens_cached": usage.cached,
            "tokens_reasoning": usage.reasoning,
            "cost_usd": priced.cost_usd,
            "ttft_ms": usage.ttft_ms,
            "duration_ms": usage.duration_ms,
            "tokens_per_second": usage.tokens_per_second,
            "step_totals": step.as_data(),
            "execution_totals": self.total.as_data(),
        }
        if priced.price_source is not None:
            data["price_source"] = priced.price_source
        if priced.unpriced is not None:
            data["unpriced"] = priced.unpriced
        return attempt, Recorded(
            priced,
            data,
            step_budget.exceeded(step.cost_usd, step.tokens),
            self._budget.exceeded(self.total.cost_usd, self.total.tokens),
        )


def attributes_of(totals: UsageTotals) -> dict[str, Any]:
    """An attempt's usage as the attributes stored with it (nothing when it reported none)."""
    if not totals.calls:
        return {}
    attributes: dict[str, Any] = {
        TOKENS_INPUT: totals.input,
        TOKENS_OUTPUT: totals.output,
        TOKENS_CACHED: totals.cached,
        TOKENS_REASONING: totals.reasoning,
        USAGE_CALLS: totals.calls,
        USAGE_UNPRICED: totals.unpriced,
        USAGE_PRICED_USD: totals.cost_usd,
    }
    if totals.cost_known is not None:
        attributes[COST_USD] = totals.cost_known
    return attributes


def totals_of(attributes: Mapping[str, Any]) -> UsageTotals:
    """The usage a stored attempt's attributes carry (what `attributes_of` wrote)."""
    calls = _whole(attributes.get(USAGE_CALLS))
    if not calls:
        return UsageTotals()
    cost = attributes.get(USAGE_PRICED_USD)
    priced = float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else 0.0
    return UsageTotals(
        calls=calls,
        input=_whole(attributes.get(TOKENS_INPUT)),
        output=_whole(attributes.get(TOKENS_OUTPUT)),
        cached=_whole(attributes.get(TOKENS_CACHED)),
        reasoning=_whole(attributes.get(TOKENS_REASONING)),
        cost_usd=priced,
        unpriced=_whole(attributes.get(USAGE_UNPRICED)),
    )


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
