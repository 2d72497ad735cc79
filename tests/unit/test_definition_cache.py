"""DefinitionCache: one parse per text or stored version, the same answers as parsing afresh."""

from __future__ import annotations

from typing import Any

import pytest

from runwire.errors import InvalidDefinition
from runwire.scenarios.definition import DefinitionCache, ParamsParser, parse_definition


class CountingKindForTests:
    """Test helper: a kind that accepts any `with` mapping and counts how often it is checked."""

    def __init__(self) -> None:
        self.checked = 0

    def parse(self, params: Any, path: str) -> object:
        self.checked += 1
        return params

    def idempotent(self, params: Any) -> bool:
        return True


def text(name: str) -> str:
    return f"name: {name}\nsteps:\n  - {{key: a, kind: k, with: {{x: 1}}}}\n"


def test_a_text_is_parsed_once_and_answers_what_parsing_answers() -> None:
    kind = CountingKindForTests()
    kinds: dict[str, ParamsParser] = {"k": kind}
    cache = DefinitionCache(kinds)
    first = cache.parse(text("one"))
    again = cache.parse(text("one"))
    assert again is first
    assert kind.checked == 1
    assert first == parse_definition(text("one"), kinds)


def test_an_invalid_text_is_refused_every_time() -> None:
    cache = DefinitionCache({"k": CountingKindForTests()})
    for _ in range(2):
        with pytest.raises(InvalidDefinition):
            cache.parse("name: bad\nsteps:\n  - {key: a, kind: unknown}\n")


def test_the_least_recently_used_text_is_dropped_first() -> None:
    kind = CountingKindForTests()
    cache = DefinitionCache({"k": kind}, maxsize=2)
    cache.parse(text("a"))
    cache.parse(text("b"))
    cache.parse(text("a"))  # a is now the most recent
    cache.parse(text("c"))  # drops b
    assert kind.checked == 3
    cache.parse(text("a"))
    assert kind.checked == 3
    cache.parse(text("b"))
    assert kind.checked == 4


def test_a_long_text_is_not_kept() -> None:
    kind = CountingKindForTests()
    long = text("long") + "# padding\n" * 20
    cache = DefinitionCache({"k": kind}, max_text=len(long) - 1)
    cache.parse(long)
    cache.parse(long)
    assert kind.checked == 2


def test_a_stored_version_is_parsed_once_per_key() -> None:
    kind = CountingKindForTests()
    cache = DefinitionCache({"k": kind})
    source = {"name": "s", "steps": [{"key": "a", "kind": "k", "with": {}}]}
    first = cache.parse_version(("workspace", "s", 1), source)
    assert cache.parse_version(("workspace", "s", 1), source) is first
    cache.parse_version(("workspace", "s", 2), source)
    assert kind.checked == 2
