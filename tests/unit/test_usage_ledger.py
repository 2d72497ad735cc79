"""A resumed run's usage ledger starts from the running totals its stored attempts carry."""

from __future__ import annotations

from runwire.domain.agents import Usage, UsageTotals
from runwire.domain.models import StepRun, StepStatus
from runwire.runner.pricing import PriceTable
from runwire.runner.usage import UsageLedger
from runwire.scenarios.budgets import NO_BUDGET, Budget


def test_an_attempt_lost_mid_call_still_counts_towards_the_budget() -> None:
    # Its runner died before the attempt ended: no attributes, but the row kept its usage.
    spent = UsageTotals(calls=2, input=900, output=50)
    lost = StepRun("e", "talk", "llm", 1, 0, StepStatus.FAILED, usage=spent)
    ended = StepRun(
        "e",
        "other",
        "llm",
        1,
        1,
        StepStatus.SUCCEEDED,
        attributes={"usage_calls": 1, "tokens_input": 10, "tokens_output": 1},
        usage=UsageTotals(calls=1, input=10, output=1),
    )
    ledger = UsageLedger(PriceTable.load(), Budget(max_tokens=1000), [lost, ended])
    assert ledger.step("talk").tokens == 950
    assert ledger.total.tokens == 961

    _, recorded = ledger.record("talk", NO_BUDGET, UsageTotals(), Usage("m", 30, 10))
    assert recorded.execution_over_budget == "budget exceeded: 1001 tokens > 1000"
    assert recorded.event_data["execution_totals"]["calls"] == 4
