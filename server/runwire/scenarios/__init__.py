"""Scenario definitions: parsing, validation, input binding and templating of step params."""

from runwire.scenarios.catalog import examples_directory, load_directory
from runwire.scenarios.definition import (
    Definition,
    InputSpec,
    InputType,
    ParamsParser,
    StepSpec,
    bind_inputs,
    parse_definition,
)
from runwire.scenarios.templating import TemplateError, check_syntax, render

__all__ = [
    "Definition",
    "InputSpec",
    "InputType",
    "ParamsParser",
    "StepSpec",
    "TemplateError",
    "bind_inputs",
    "check_syntax",
    "examples_directory",
    "load_directory",
    "parse_definition",
    "render",
]
