"""Rendering templates in step params: native values, strings, errors, the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from runwire.errors import FieldError
from runwire.scenarios.templating import TemplateError, check_syntax, render

CONTEXT = {
    "inputs": {"count": 3, "name": "ada", "tags": ["a", "b"], "env": {"A": "1"}, "id": "007"}
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.count }}", 3),
        ("{{inputs.count}}", 3),
        ("  {{ inputs.count }}\n", 3),
        ("{{- inputs.count -}}", 3),
        ("{{ inputs.tags }}", ["a", "b"]),
        ("{{ inputs.env }}", {"A": "1"}),
        ("{{ inputs.count * 2 + 0.5 }}", 6.5),
        ("{{ inputs.count > 2 }}", True),
        ("{{ none }}", None),
        ("{{ (1, 2) }}", [1, 2]),
        ("{{ {'a': {'b': inputs.count}} }}", {"a": {"b": 3}}),
        ("{{ inputs.id }}", "007"),  # a string input that looks like a number stays a string
        ('{{ "}}" }}', "}}"),
    ],
)
def test_a_lone_expression_keeps_its_native_type(template: str, expected: Any) -> None:
    assert render(template, CONTEXT, "p") == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("hello {{ inputs.name }}", "hello ada"),
        ("{{ inputs.count }}{{ inputs.count }}", "33"),
        ("{{ inputs.count }} }}", "3 }}"),
        ("{{ inputs.count }}{# note #}", "3"),
        ("{% for tag in inputs.tags %}{{ tag }},{% endfor %}", "a,b,"),
        ("{% if inputs.count > 2 %}many{% endif %}", "many"),
        ("{% raw %}{{ inputs.count }}{% endraw %}", "{{ inputs.count }}"),
        ("<{{ inputs.name }}> & {{ '<b>' }}", "<ada> & <b>"),
        ("set -e\necho {{ inputs.name }}\n", "set -e\necho ada\n"),
    ],
)
def test_text_around_expressions_renders_to_a_string(template: str, expected: str) -> None:
    assert render(template, CONTEXT, "p") == expected


def test_rendering_walks_mappings_and_lists_and_leaves_other_values_alone() -> None:
    params = {
        "argv": ["echo", "{{ inputs.name }}", "${#array} {x}"],
        "seconds": "{{ inputs.count }}",
        "env": {"{{ key }}": "{{ inputs.env.A }}"},
        "shell": False,
        "nothing": None,
        "ratio": 1.5,
    }

    assert render(params, CONTEXT, "steps[0].with") == {
        "argv": ["echo", "ada", "${#array} {x}"],
        "seconds": 3,
        "env": {"{{ key }}": "1"},
        "shell": False,
        "nothing": None,
        "ratio": 1.5,
    }


def test_values_from_inputs_are_not_rendered_again() -> None:
    context = {"inputs": {"name": "{{ inputs.secret }}", "secret": "s3cret"}}

    assert render("hi {{ inputs.name }}", context, "p") == "hi {{ inputs.secret }}"


def test_rendering_returns_a_copy() -> None:
    params = {"argv": ["{{ inputs.name }}"]}

    render(params, CONTEXT, "p")

    assert params == {"argv": ["{{ inputs.name }}"]}


def test_an_undefined_name_names_the_path_and_the_expression() -> None:
    with pytest.raises(TemplateError) as caught:
        render({"argv": ["a", "b", "{{ inputs.nme }}"]}, CONTEXT, "steps[1].with")

    assert caught.value.message == (
        'steps[1].with.argv[2]: cannot render "{{ inputs.nme }}": '
        "'dict object' has no attribute 'nme'"
    )
    assert caught.value.path == "steps[1].with.argv[2]"


@pytest.mark.parametrize(
    "template",
    [
        "x {{ inputs.nme }}",
        "{{ [inputs.nme] }}",
        "{{ missing }}",
        "{% for x in missing %}{% endfor %}",
    ],
)
def test_undefined_names_are_errors_wherever_they_are(template: str) -> None:
    with pytest.raises(TemplateError, match=r"is undefined|has no attribute"):
        render(template, CONTEXT, "p")


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ inputs.__class__ }}",
        "{{ inputs.tags.append(1) }}",
        "{{ inputs.env.update({'B': 2}) }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_the_sandbox_refuses_internals_and_mutation(template: str) -> None:
    with pytest.raises(TemplateError, match=r"unsafe|not safely callable"):
        render(template, CONTEXT, "p")

    assert CONTEXT["inputs"]["tags"] == ["a", "b"]


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ 1 / 0 }}", "division by zero"),
        ("{{ inputs.name + 1 }}", "can only concatenate str"),
        ("{{ range(3) }}", "the result is a range, not JSON data"),
        ("{{ inputs.env.items() }}", "the result is a dict_items, not JSON data"),
        ("{{ inputs.count ", "unexpected end of template"),
    ],
)
def test_any_failure_while_rendering_is_a_template_error(template: str, reason: str) -> None:
    with pytest.raises(TemplateError, match=reason):
        render(template, CONTEXT, "p")


def test_a_long_template_is_shortened_in_the_message() -> None:
    template = "echo " + "x" * 500 + " {{ missing }}"

    with pytest.raises(TemplateError) as caught:
        render(template, CONTEXT, "p")

    assert len(caught.value.message) < 250
    assert "x…" in caught.value.message


def test_check_syntax_reports_each_bad_template_at_its_path() -> None:
    params = {"argv": ["ok {{ inputs.x }}", "{{ inputs.x "], "env": {"A": "{% if %}"}, "n": 1}

    errors = check_syntax(params, "steps[0].with")

    assert [error.path for error in errors] == ["steps[0].with.argv[1]", "steps[0].with.env.A"]
    assert errors[0] == FieldError(
        "steps[0].with.argv[1]",
        "template syntax error: unexpected end of template, expected 'end of print statement'. "
        "(line 1)",
    )


def test_check_syntax_accepts_undefined_names() -> None:
    # Names are only known when an execution renders the template.
    assert check_syntax(["{{ anything.at.all }}", "plain"], "p") == []
