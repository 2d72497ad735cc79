"""What a model's tokens cost, by model-name pattern, and where each price was read.

Shipped defaults live in prices.yaml beside this module; RUNWIRE_PRICES_FILE replaces them with a
file of the same shape. A model no entry matches has no price: its cost is None and says so, never
0 (a test that spent unknown money must not read as free).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from runwire.domain.agents import Priced, Usage
from runwire.errors import RunwireError

_ENTRY_FIELDS = {"model", "input", "cached_input", "output", "source", "as_of"}
_PER_TOKEN = 1e-6  # prices are written per million tokens


class PriceTableInvalid(RunwireError):
    """The price table file is not a valid price table."""


@dataclass(frozen=True, slots=True)
class Price:
    """Dollars per million tokens for the models `model` (a glob) matches."""

    model: str
    input: float
    output: float
    cached_input: float | None
    source: str
    as_of: str
    pattern: re.Pattern[str]

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached, usage.input)
        cached_price = self.input if self.cached_input is None else self.cached_input
        return _PER_TOKEN * math.fsum(
            (
                (usage.input - cached) * self.input,
                cached * cached_price,
                usage.output * self.output,
            )
        )


@dataclass(frozen=True, slots=True)
class PriceTable:
    prices: tuple[Price, ...]

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceTable:
        """The table in `path`, or the shipped one."""
        if path is None:
            text = resources.files("runwire.runner").joinpath("prices.yaml").read_text("utf-8")
            where = "the shipped price table"
        else:
            try:
                text = Path(path).read_text("utf-8")
            except OSError as error:
                raise PriceTableInvalid(
                    f"price table {path} cannot be read: {error.strerror}"
                ) from None
            where = f"price table {path}"
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise PriceTableInvalid(f"{where} is not YAML: {error}") from None
        return cls.parse(loaded, where)

    @classmethod
    def parse(cls, loaded: Any, where: str = "price table") -> PriceTable:
        entries = loaded.get("prices") if isinstance(loaded, dict) else None
        if not isinstance(entries, list):
            raise PriceTableInvalid(f"{where}: expected a mapping with a list `prices`")
        return cls(tuple(_price(entry, f"{where}: prices[{i}]") for i, entry in enumerate(entries)))

    def price(self, usage: Usage) -> Priced:
        """`usage` with its cost: what the source reported, else the table's, else None."""
        if usage.cost_usd is not None:
            return Priced(usage, usage.cost_usd, price_source="reported by the step")
        if not usage.model:
            return Priced(usage, None, unpriced="no model was reported, so no price applies")
        found = self.find(usage.model)
        if found is None:
            return Priced(
                usage, None, unpriced=f"no price for model {usage.model!r} in the price table"
            )
        return Priced(usage, found.cost(usage), price_source=f"{found.source} ({found.as_of})")

    def find(self, model: str) -> Price | None:
        for price in self.prices:
            if price.pattern.fullmatch(model):
                return price
        return None


def _price(entry: Any, path: str) -> Price:
    if not isinstance(entry, dict):
        raise PriceTableInvalid(f"{path}: expected a mapping")
    unknown = set(entry) - _ENTRY_FIELDS
    if unknown:
        raise PriceTableInvalid(f"{path}: unknown field(s) {', '.join(sorted(unknown))}")
    model = entry.get("model")
    if not isinstance(model, str) or not model:
        raise PriceTableInvalid(f"{path}.model: expected a model name or glob")
    for field in ("source", "as_of"):
        if not isinstance(entry.get(field), str) or not entry[field]:
            raise PriceTableInvalid(f"{path}.{field}: required: say where the price is from, when")
    return Price(
        model=model,
        input=_dollars(entry.get("input"), f"{path}.input"),
        output=_dollars(entry.get("output"), f"{path}.output"),
        cached_input=(
            None
            if entry.get("cached_input") is None
            else _dollars(entry["cached_input"], f"{path}.cached_input")
        ),
        source=entry["source"],
        as_of=str(entry["as_of"]),
        pattern=re.compile(fnmatch.translate(model), re.IGNORECASE),
    )


def _dollars(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PriceTableInvalid(f"{path}: expected dollars per million tokens, a number")
    if value < 0:
        raise PriceTableInvalid(f"{path}: a price cannot be negative")
    return float(value)


__all__: Sequence[str] = ("Price", "PriceTable", "PriceTableInvalid")
