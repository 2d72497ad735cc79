"""Saving scenarios as versions, and resolving what a start runs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tests.support.domain import EDITOR, OUTSIDER, WORKSPACE, Domain

from runwire.errors import FieldError, Invalid, InvalidDefinition, NotFound

HELLO = "name: hello\nsteps:\n  - {key: greet, kind: shell, with: {argv: [echo, hi]}}\n"
HELLO_LOUDER = HELLO.replace("[echo, hi]", "[echo, HI]")


async def test_saving_a_new_name_creates_version_1(domain: Domain) -> None:
    saved = await domain.scenarios.save(HELLO, EDITOR)

    assert (saved.name, saved.version, saved.workspace_id) == ("hello", 1, WORKSPACE)
    assert saved.definition == {
        "name": "hello",
        "steps": [{"key": "greet", "kind": "shell", "with": {"argv": ["echo", "hi"]}}],
    }
    assert await domain.store.latest_scenario(WORKSPACE, "hello") == saved


async def test_an_unchanged_definition_keeps_its_version(domain: Domain) -> None:
    first = await domain.scenarios.save(HELLO, EDITOR)

    # The same definition as a mapping, keys in another order.
    again = await domain.scenarios.save(
        {
            "steps": [{"with": {"argv": ["echo", "hi"]}, "kind": "shell", "key": "greet"}],
            "name": "hello",
        },
        EDITOR,
        must_exist=True,
    )

    assert again == first


async def test_a_changed_definition_is_the_next_version(domain: Domain) -> None:
    await domain.scenarios.save(HELLO, EDITOR)

    second = await domain.scenarios.save(HELLO_LOUDER, EDITOR, must_exist=True)

    assert second.version == 2
    assert await domain.store.latest_scenario(WORKSPACE, "hello") == second


async def test_creating_a_name_that_exists_is_invalid_at_name(domain: Domain) -> None:
    await domain.scenarios.save(HELLO, EDITOR)

    with pytest.raises(Invalid) as refusal:
        await domain.scenarios.save(HELLO_LOUDER, EDITOR, must_exist=False)

    assert refusal.value.errors == (FieldError("name", "scenario hello exists; update it instead"),)
    latest = await domain.store.latest_scenario(WORKSPACE, "hello")
    assert latest is not None
    assert latest.version == 1


async def test_updating_a_name_that_does_not_exist_is_not_found(domain: Domain) -> None:
    with pytest.raises(NotFound, match="scenario hello not found"):
        await domain.scenarios.save(HELLO, EDITOR, must_exist=True)
    assert await domain.store.latest_scenario(WORKSPACE, "hello") is None


async def test_names_are_per_workspace(domain: Domain) -> None:
    await domain.scenarios.save(HELLO, EDITOR)

    theirs = await domain.scenarios.save(HELLO_LOUDER, OUTSIDER, must_exist=False)

    assert (theirs.version, theirs.workspace_id) == (1, OUTSIDER.workspace_id)
    third = replace(EDITOR, workspace_id="workspace-c")
    with pytest.raises(NotFound):
        await domain.scenarios.save(HELLO, third, must_exist=True)


async def test_an_invalid_definition_is_not_saved(domain: Domain) -> None:
    with pytest.raises(InvalidDefinition) as refusal:
        await domain.scenarios.save("name: hello\nsteps: [{key: a, kind: teleport}]", EDITOR)

    assert [error.path for error in refusal.value.errors] == ["steps[0].kind"]
    assert await domain.store.latest_scenario(WORKSPACE, "hello") is None


async def test_resolve_gives_the_latest_version_of_the_workspace_s_scenario(
    domain: Domain,
) -> None:
    await domain.scenarios.save(HELLO, EDITOR)
    latest = await domain.scenarios.save(HELLO_LOUDER, EDITOR)

    definition, scenario = await domain.scenarios.resolve(WORKSPACE, "hello", None)

    assert scenario == latest
    assert definition.source == latest.definition
    with pytest.raises(NotFound, match="scenario hello not found"):
        await domain.scenarios.resolve(OUTSIDER.workspace_id, "hello", None)


async def test_resolve_parses_an_inline_definition_without_a_scenario(domain: Domain) -> None:
    definition, scenario = await domain.scenarios.resolve(WORKSPACE, None, HELLO)

    assert (definition.name, [step.key for step in definition.steps], scenario) == (
        "hello",
        ["greet"],
        None,
    )


@pytest.mark.parametrize(("name", "text"), [(None, None), ("hello", HELLO)])
async def test_resolve_takes_exactly_one_of_a_name_or_a_definition(
    domain: Domain, name: str | None, text: str | None
) -> None:
    with pytest.raises(Invalid) as refusal:
        await domain.scenarios.resolve(WORKSPACE, name, text)
    assert refusal.value.errors == (
        FieldError("input", "give exactly one of scenario or definition"),
    )
