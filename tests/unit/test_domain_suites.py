"""Suites: saved as versions; every case checked against its scenario, errors naming the case."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.domain import EDITOR, OUTSIDER, WORKSPACE, Domain

from runwire.errors import FieldError, Invalid, InvalidDefinition, NotFound
from runwire.scenarios.suites import MAX_CASES

GREET = """
name: greet
inputs:
  who: {type: string}
  times: {type: integer, default: 1}
steps:
  - {key: say, kind: shell, with: {argv: [echo, "{{ inputs.who }}"]}}
"""


async def saved_greet(domain: Domain) -> None:
    await domain.scenarios.save(GREET, EDITOR)


async def refused(domain: Domain, text: str) -> tuple[FieldError, ...]:
    with pytest.raises(Invalid) as refusal:
        await domain.suites.save(text, EDITOR)
    assert await domain.store.latest_suite(WORKSPACE, "smoke") is None
    return refusal.value.errors


async def test_a_suite_is_saved_as_version_1_with_its_cases_expanded(domain: Domain) -> None:
    await saved_greet(domain)
    text = """
name: smoke
description: after every deploy
tags: [nightly]
cases:
  - {scenario: greet, inputs: {who: world}, labels: [basic]}
  - {name: loud, scenario: greet, inputs: {who: WORLD}, expect: {status: FAILED}}
  - {scenario: greet, inputs: {times: 2}, matrix: {who: [ann, bob]}}
  - {name: rows, scenario: greet, rows: [{who: cy}, {who: di, times: 3}]}
  - name: inline
    definition:
      name: inline-check
      steps: [{key: ok, kind: shell, with: {argv: ["true"]}}]
"""
    saved = await domain.suites.save(text, EDITOR)

    assert (saved.name, saved.version, saved.description, saved.tags) == (
        "smoke",
        1,
        "after every deploy",
        ("nightly",),
    )
    assert (saved.created_by, saved.workspace_id) == ("user:editor", WORKSPACE)
    cases = domain.suites.parsed(saved).cases
    assert [(c.name, c.scenario, dict(c.inputs), c.expected_status) for c in cases] == [
        ("greet[who=world]", "greet", {"who": "world"}, "SUCCEEDED"),
        ("loud", "greet", {"who": "WORLD"}, "FAILED"),
        ("greet[times=2, who=ann]", "greet", {"times": 2, "who": "ann"}, "SUCCEEDED"),
        ("greet[times=2, who=bob]", "greet", {"times": 2, "who": "bob"}, "SUCCEEDED"),
        ("rows[who=cy]", "greet", {"who": "cy"}, "SUCCEEDED"),
        ("rows[who=di, times=3]", "greet", {"who": "di", "times": 3}, "SUCCEEDED"),
        ("inline", None, {}, "SUCCEEDED"),
    ]
    assert cases[0].labels == ("basic",)
    assert cases[-1].definition is not None
    assert cases[-1].definition.name == "inline-check"
    assert await domain.store.latest_suite(WORKSPACE, "smoke") == saved


async def test_a_matrix_makes_every_combination(domain: Domain) -> None:
    await saved_greet(domain)
    saved = await domain.suites.save(
        "name: smoke\ncases:\n  - {scenario: greet, matrix: {who: [a, b], times: [1, 2, 3]}}\n",
        EDITOR,
    )

    names = [case.name for case in domain.suites.parsed(saved).cases]
    assert names == [
        "greet[who=a, times=1]",
        "greet[who=a, times=2]",
        "greet[who=a, times=3]",
        "greet[who=b, times=1]",
        "greet[who=b, times=2]",
        "greet[who=b, times=3]",
    ]


async def test_saving_again_makes_the_next_version_unless_unchanged(domain: Domain) -> None:
    await saved_greet(domain)
    text = "name: smoke\ncases: [{scenario: greet, inputs: {who: a}}]\n"
    first = await domain.suites.save(text, EDITOR, must_exist=False)

    assert await domain.suites.save(text, EDITOR, must_exist=True) == first
    second = await domain.suites.save(text.replace("who: a", "who: b"), EDITOR, must_exist=True)

    assert second.version == 2


async def test_create_refuses_an_existing_name_and_update_a_new_one(domain: Domain) -> None:
    await saved_greet(domain)
    text = "name: smoke\ncases: [{scenario: greet, inputs: {who: a}}]\n"
    await domain.suites.save(text, EDITOR, must_exist=False)

    with pytest.raises(Invalid) as exists:
        await domain.suites.save(text, EDITOR, must_exist=False)
    with pytest.raises(NotFound):
        await domain.suites.save(text.replace("smoke", "other"), EDITOR, must_exist=True)

    assert exists.value.errors == (FieldError("name", "suite smoke exists; update it instead"),)


async def test_unknown_scenarios_and_inputs_are_named_by_their_case(domain: Domain) -> None:
    await saved_greet(domain)

    errors = await refused(
        domain,
        """
name: smoke
cases:
  - {scenario: greet, inputs: {who: a}}
  - {scenario: grete, inputs: {who: a}}
  - {scenario: greet, inputs: {who: a, colour: red}}
  - {scenario: greet}
  - {scenario: greet, rows: [{who: c}, {who: b, times: many}]}
  - {scenario: greet, matrix: {who: [d, e], volume: [1]}}
""",
    )

    assert errors == (
        FieldError("cases[1].scenario", "unknown scenario grete"),
        FieldError("cases[2].inputs.colour", "unknown input; expected one of who, times"),
        FieldError("cases[3].inputs.who", "required"),
        FieldError("cases[4].rows[1].times", "expected integer, got string"),
        FieldError("cases[5].matrix.volume", "unknown input; expected one of who, times"),
    )


async def test_a_scenario_of_another_workspace_is_unknown(domain: Domain) -> None:
    await domain.scenarios.save(GREET, OUTSIDER)

    errors = await refused(domain, "name: smoke\ncases: [{scenario: greet, inputs: {who: a}}]\n")

    assert errors == (FieldError("cases[0].scenario", "unknown scenario greet"),)


async def test_shape_errors_name_the_case_and_field(domain: Domain) -> None:
    with pytest.raises(InvalidDefinition) as refusal:
        await domain.suites.save(
            """
name: smoke
tags: [ok, " "]
colour: blue
cases:
  - {scenario: greet, definition: {name: x}}
  - {inputs: {who: a}}
  - {scenario: greet, matrix: {who: []}}
  - {scenario: greet, matrix: {who: [a]}, rows: [{who: b}]}
  - {scenario: greet, expect: {status: RUNNING}}
  - {name: inline, definition: {name: bad, steps: [{key: x, kind: teleport}]}}
  - {name: twice, scenario: greet}
  - {name: twice, scenario: greet}
  - {scenario: greet, inputs: {who: a}}
  - {scenario: greet, inputs: {who: a}}
""",
            EDITOR,
        )

    paths = [error.path for error in refusal.value.errors]
    assert paths == [
        "colour",
        "tags[1]",
        "cases[0]",
        "cases[1]",
        "cases[2].matrix.who",
        "cases[3]",
        "cases[4].expect.status",
        "cases[5].definition.steps[0].kind",
        "cases[7].name",
        "cases[9].name",
    ]
    assert refusal.value.errors[-2].message == 'duplicate case name "twice"; first at cases[6]'


async def test_a_matrix_too_large_is_refused_before_it_is_expanded(domain: Domain) -> None:
    values = list(range(10))
    matrix = ", ".join(f"i{n}: {values}" for n in range(10))

    with pytest.raises(InvalidDefinition) as refusal:
        await domain.suites.save(
            f"name: smoke\ncases: [{{scenario: x, matrix: {{{matrix}}}}}]", EDITOR
        )

    assert refusal.value.errors == (
        FieldError("cases[0].matrix", f"makes 10,000,000,000 cases; at most {MAX_CASES:,}"),
    )


async def test_labels_of_a_case_are_checked_at_save_time(domain: Domain) -> None:
    await saved_greet(domain)

    errors = await refused(
        domain,
        f"name: smoke\ncases: [{{scenario: greet, inputs: {{who: a}}, labels: [{'x' * 201}]}}]",
    )

    assert errors == (FieldError("cases[0].labels[0]", "must be at most 200 characters (got 201)"),)


async def test_the_documented_example_suite_saves_as_written(domain: Domain) -> None:
    docs = Path(__file__).parents[2] / "docs" / "suites.md"
    example = docs.read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    await domain.scenarios.save(
        GREET.replace("who: {type: string}", "who: {type: string, default: you}").replace(
            "times: {type: integer, default: 1}", "loud: {type: boolean, default: false}"
        ),
        EDITOR,
    )
    await domain.scenarios.save(
        "name: failing\nsteps:\n  - {key: no, kind: shell, with: {argv: ['false']}}\n", EDITOR
    )

    saved = await domain.suites.save(example, EDITOR)

    names = [case.name for case in domain.suites.parsed(saved).cases]
    assert names == [
        "greet",
        "greets-ann",
        "failing",
        "greet[who=ann, loud=true]",
        "greet[who=ann, loud=false]",
        "greet[who=bob, loud=true]",
        "greet[who=bob, loud=false]",
        "people[who=cy]",
        "people[who=di, loud=true]",
        "inline-check",
    ]
