"""Loading definitions from a directory, and the packaged examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runwire.errors import FieldError, InvalidDefinition
from runwire.runner.steps import STEP_KINDS
from runwire.scenarios.catalog import examples_directory, load_directory
from runwire.scenarios.definition import ParamsParser, bind_inputs
from runwire.scenarios.templating import render


class AnyParamsForTests:
    """Test helper: a kind that accepts any `with` mapping."""

    def parse(self, params: Any, path: str) -> object:
        return params

    def idempotent(self, params: Any) -> bool:
        return True


KINDS: dict[str, ParamsParser] = {
    kind: AnyParamsForTests() for kind in ("shell", "agent", "http", "llm", "sleep")
}
STEP = "steps: [{key: a, kind: sleep}]\n"


def test_every_definition_file_loads_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text("name: second\n" + STEP)
    (tmp_path / "a.yaml").write_text("name: first\n" + STEP)
    (tmp_path / "c.json").write_text('{"name": "third", "steps": [{"key": "a", "kind": "sleep"}]}')
    (tmp_path / "notes.txt").write_text("not a definition")
    (tmp_path / "d.yaml").mkdir()

    definitions = load_directory(tmp_path, KINDS)

    assert [definition.name for definition in definitions] == ["first", "second", "third"]


def test_errors_in_every_bad_file_are_prefixed_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "checkout.yaml").write_text("name: checkout\nsteps: [{key: a, kind: shel}]\n")
    (tmp_path / "good.yaml").write_text("name: good\n" + STEP)
    (tmp_path / "broken.yaml").write_text("name: [\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe")

    with pytest.raises(InvalidDefinition) as caught:
        load_directory(tmp_path, KINDS)

    assert caught.value.errors == (
        FieldError("binary.yaml", "not UTF-8 text"),
        FieldError(
            "broken.yaml",
            "invalid YAML: expected the node content, but found '<stream end>' (line 2, column 1)",
        ),
        FieldError(
            "checkout.yaml: steps[0].kind",
            'unknown kind "shel"; expected one of agent, http, llm, shell, sleep',
        ),
    )
    assert str(caught.value).startswith("binary.yaml: not UTF-8 text; broken.yaml: invalid YAML")


def test_two_files_with_one_scenario_name_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: same\n" + STEP)
    (tmp_path / "b.yaml").write_text("name: same\n" + STEP)

    with pytest.raises(
        InvalidDefinition,
        match=r'^b\.yaml: name: duplicate scenario name "same"; first in a\.yaml$',
    ):
        load_directory(tmp_path, KINDS)


# What the examples' later steps read from earlier ones (the llm-agent example's tool call).
UPSTREAM = {
    "plan": {
        "output": {
            "message": {"role": "assistant", "content": None, "tool_calls": []},
            "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
        }
    },
    "weather": {"output": {"status": 200, "body": {"forecast": "sunny"}}},
}


def test_the_packaged_examples_all_parse_and_render_with_their_defaults() -> None:
    definitions = load_directory(examples_directory(), STEP_KINDS)

    assert {definition.name for definition in definitions} >= {
        "hello",
        "countdown",
        "health-check",
        "failing",
        "llm-chat",
        "llm-agent",
    }
    for definition in definitions:
        context = {"inputs": bind_inputs(definition, None), "steps": UPSTREAM}
        for step in definition.steps:
            render(step.with_, context, f"steps[{step.position}].with")


def test_the_hello_example_greets_by_name() -> None:
    [hello] = [d for d in load_directory(examples_directory(), KINDS) if d.name == "hello"]

    params = render(hello.step("greet").with_, {"inputs": bind_inputs(hello, {"name": "Ada"})}, "")

    assert params == {"argv": ["echo", "hello Ada"]}
