"""Pricing usage with the price table, summing it per step and execution, and budgets."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runwire.domain.agents import Usage, UsageTotals
from runwire.domain.models import StepRun, StepStatus
from runwire.runner.pricing import PriceTable, PriceTableInvalid
from runwire.runner.usage import UsageLedger, attributes_of, totals_of
from runwire.scenarios.budgets import NO_BUDGET, Budget

TABLE = PriceTable.parse(
    {
        "prices": [
            {
                "model": "acme-mini*",
                "input": 1.0,
                "cached_input": 0.1,
                "output": 4.0,
                "source": "https://acme.example/pricing",
                "as_of": "2026-01-01",
            },
            {"model": "acme-*", "input": 10.0, "output": 40.0, "source": "s", "as_of": "d"},
        ]
    }
)


def test_the_first_matching_pattern_prices_input_cached_and_output_tokens() -> None:
    priced = TABLE.price(Usage("acme-mini-2026", input=1_000_000, output=500_000, cached=400_000))
    # 600k input at $1/M, 400k cached at $0.10/M, 500k output at $4/M
    assert priced.cost_usd == pytest.approx(0.6 + 0.04 + 2.0)
    assert priced.price_source == "https://acme.example/pricing (2026-01-01)"
    assert TABLE.price(Usage("ACME-large", input=1_000_000, output=0)).cost_usd == 10.0


def test_an_unknown_model_has_no_cost_and_says_why_never_zero() -> None:
    priced = TABLE.price(Usage("mystery-1", input=10, output=10))
    assert priced.cost_usd is None
    assert priced.unpriced == "no price for model 'mystery-1' in the price table"
    assert TABLE.price(Usage(None, input=10, output=10)).cost_usd is None


def test_a_cost_the_source_reported_is_taken_as_it_is() -> None:
    priced = TABLE.price(Usage("mystery-1", input=10, output=10, cost_usd=0.25))
    assert (priced.cost_usd, priced.price_source) == (0.25, "reported by the step")


def test_the_shipped_table_loads_and_prices_the_fake_provider() -> None:
    shipped = PriceTable.load()
    assert shipped.find("gpt-4o-mini-2024-07-18") is not None
    assert shipped.find("gpt-4o-mini-2024-07-18") is shipped.find("gpt-4o-mini")
    priced = shipped.price(Usage("runwire-fake-1", input=1_000_000, output=0))
    assert priced.cost_usd == 1.0
    assert "not a real price" in (priced.price_source or "")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("prices: 3", "expected a mapping with a list `prices`"),
        ("prices: [{model: m, input: 1, output: 1, as_of: d}]", "prices[0].source: required"),
        ("prices: [{model: m, input: -1, output: 1, source: s, as_of: d}]", "cannot be negative"),
        ("prices: [{model: m, input: x, output: 1, source: s, as_of: d}]", "prices[0].input"),
        (
            "prices: [{model: m, inptu: 1, output: 1, source: s, as_of: d}]",
            "unknown field(s) inptu",
        ),
        ("prices: [", "is not YAML"),
    ],
)
def test_a_bad_price_file_is_refused_naming_the_field(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(PriceTableInvalid) as raised:
        PriceTable.load(path)
    assert problem in raised.value.message
    assert str(path) in raised.value.message


def test_a_missing_price_file_is_named() -> None:
    with pytest.raises(PriceTableInvalid, match="cannot be read"):
        PriceTable.load("/nonexistent/prices.yaml")


def test_budgets_say_which_limit_and_the_figures() -> None:
    assert Budget(max_cost_usd=0.5).exceeded(0.52, 10) == "budget exceeded: $0.52 > $0.50"
    # Apart by less than a cent: places enough to tell them apart.
    assert Budget(max_cost_usd=0.01).exceeded(0.013, 10) == "budget exceeded: $0.013 > $0.010"
    assert Budget(max_cost_usd=0.5).exceeded(0.50004, 1) == "budget exceeded: $0.50004 > $0.50000"
    assert Budget(max_cost_usd=0.5).exceeded(0.5, 10) is None
    assert Budget(max_tokens=100).exceeded(0.0, 101) == "budget exceeded: 101 tokens > 100"
    assert Budget(max_cost_usd=0.001).exceeded(0.0012, 0) == (
        "budget exceeded: $0.001200 > $0.001000"
    )
    assert NO_BUDGET.exceeded(math.inf, 10**12) is None


def test_the_ledger_sums_per_step_and_execution_and_flags_the_budget_crossed() -> None:
    ledger = UsageLedger(TABLE, Budget(max_cost_usd=1.0))
    step_budget = Budget(max_tokens=1_500_000)
    attempt, first = ledger.record("a", step_budget, UsageTotals(), Usage("acme-mini", 500_000, 0))
    assert (first.step_over_budget, first.execution_over_budget) == (None, None)
    assert first.event_data["step_totals"]["cost_usd"] == pytest.approx(0.5)
    attempt, second = ledger.record("a", step_budget, attempt, Usage("acme-mini", 600_000, 0))
    assert second.step_over_budget is None
    assert second.execution_over_budget == "budget exceeded: $1.10 > $1.00"
    _, third = ledger.record("b", step_budget, UsageTotals(), Usage("acme-mini", 1_600_000, 0))
    assert third.step_over_budget == "budget exceeded: 1600000 tokens > 1500000"
    assert ledger.total.calls == 3
    assert attempt.tokens == 1_100_000


def test_unpriced_usage_makes_totals_unknown_not_zero() -> None:
    ledger = UsageLedger(TABLE, NO_BUDGET)
    attempt, _ = ledger.record("a", NO_BUDGET, UsageTotals(), Usage("acme-mini", 1_000_000, 0))
    attempt, recorded = ledger.record("a", NO_BUDGET, attempt, Usage("mystery", 5, 5))
    assert recorded.event_data["cost_usd"] is None
    assert recorded.event_data["unpriced"].startswith("no price for model 'mystery'")
    assert recorded.event_data["step_totals"]["cost_usd"] is None
    assert recorded.event_data["step_totals"]["unpriced"] == 1
    stored = attributes_of(attempt)
    assert "cost_usd" not in stored  # the trace must not show a partial sum as the cost
    assert stored["usage_priced_usd"] == pytest.approx(1.0)


def test_a_resumed_run_starts_from_the_usage_its_attempts_stored() -> None:
    attempt, _ = UsageLedger(TABLE, NO_BUDGET).record(
        "a", NO_BUDGET, UsageTotals(), Usage("acme-mini", 300_000, 100_000)
    )
    stored = attributes_of(attempt)
    assert totals_of(stored) == attempt
    at = datetime(2026, 12, 2, tzinfo=UTC)
    runs = [
        StepRun("ex", "a", "llm", 1, 0, StepStatus.FAILED, at, at, attributes=stored),
        StepRun("ex", "a", "llm", 2, 0, StepStatus.FAILED, at, at, attributes=stored),
        StepRun("ex", "b", "shell", 1, 1, StepStatus.SUCCEEDED, at, at, attributes={"x": 1}),
    ]
    ledger = UsageLedger(TABLE, Budget(max_cost_usd=1.0), runs)
    assert ledger.step("a").calls == 2
    assert ledger.total.cost_usd == pytest.approx(1.4)
    _, recorded = ledger.record("a", NO_BUDGET, UsageTotals(), Usage("acme-mini", 1, 0))
    assert recorded.execution_over_budget is not None
