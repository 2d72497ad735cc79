"""`budget:` in a definition: what a step or an execution may spend on models and agents."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Budget:
    """The most a step or an execution may spend; None is no limit on that side."""

    max_cost_usd: float | None = None
    max_tokens: int | None = None

    def exceeded(self, cost_usd: float, tokens: int) -> str | None:
        """Why spending `cost_usd` (what could be priced) and `tokens` crossed this budget, with
        the figures; None while within it. Usage without a price cannot cross a cost budget."""
        if self.max_cost_usd is not None and cost_usd > self.max_cost_usd:
            spent, limit = usd_apart(cost_usd, self.max_cost_usd)
            return f"budget exceeded: {spent} > {limit}"
        if self.max_tokens is not None and tokens > self.max_tokens:
            return f"budget exceeded: {tokens} tokens > {self.max_tokens}"
        return None


NO_BUDGET = Budget()


def usd(value: float) -> str:
    """Dollars as people read them: cents from a cent up, six places below (tokens are cheap)."""
    return f"${value:.2f}" if value >= 0.01 else f"${value:.6f}"


def usd_apart(spent: float, limit: float) -> tuple[str, str]:
    """Both as `usd` writes them, with more places when that shows them equal ($0.013 against
    $0.01 would read "$0.01 > $0.01")."""
    shown, places = (usd(spent), usd(limit)), 2
    while shown[0] == shown[1] and places < 9:
        places += 1
        shown = (f"${spent:.{places}f}", f"${limit:.{places}f}")
    return shown
