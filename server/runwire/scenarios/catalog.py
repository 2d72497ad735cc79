"""Load the scenario definitions kept as files in a directory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from runwire.errors import FieldError, InvalidDefinition
from runwire.scenarios.definition import Definition, ParamsParser, parse_definition
from runwire.scenarios.suites import SuiteDefinition, parse_suite

SUFFIXES = frozenset({".yaml", ".yml", ".json"})


def examples_directory() -> Path:
    """The example scenarios shipped with Runwire."""
    return Path(__file__).parent / "examples"


def load_directory(directory: Path, kinds: Mapping[str, ParamsParser]) -> list[Definition]:
    """Parse every definition file in `directory`, by file name, reporting all bad files at once."""
    definitions: list[Definition] = []
    errors: list[FieldError] = []
    first_file: dict[str, str] = {}
    files = sorted(
        (path for path in directory.iterdir() if path.suffix in SUFFIXES and path.is_file()),
        key=lambda path: path.name,
    )
    for file in files:
        try:
            definition = parse_definition(file.read_text(encoding="utf-8"), kinds)
        except UnicodeDecodeError:
            errors.append(FieldError(file.name, "not UTF-8 text"))
            continue
        except InvalidDefinition as error:
            errors.extend(
                FieldError(f"{file.name}: {e.path}" if e.path else file.name, e.message)
                for e in error.errors
            )
            continue
        if definition.name in first_file:
            # Scenarios are found by name, so a second file would silently shadow the first.
            first = first_file[definition.name]
            message = f'duplicate scenario name "{definition.name}"; first in {first}'
            errors.append(FieldError(f"{file.name}: name", message))
            continue
        first_file[definition.name] = file.name
        definitions.append(definition)
    if errors:
        raise InvalidDefinition(errors)
    return definitions


def load_suite_directory(
    directory: Path, kinds: Mapping[str, ParamsParser]
) -> list[tuple[str, SuiteDefinition]]:
    """Parse every suite file in `directory` as (file name, suite), all bad files at once."""
    suites: list[tuple[str, SuiteDefinition]] = []
    errors: list[FieldError] = []
    first_file: dict[str, str] = {}
    for file in sorted(
        (path for path in directory.iterdir() if path.suffix in SUFFIXES and path.is_file()),
        key=lambda path: path.name,
    ):
        try:
            suite = parse_suite(file.read_text(encoding="utf-8"), kinds)
        except UnicodeDecodeError:
            errors.append(FieldError(file.name, "not UTF-8 text"))
            continue
        except InvalidDefinition as error:
            errors.extend(
                FieldError(f"{file.name}: {e.path}" if e.path else file.name, e.message)
                for e in error.errors
            )
            continue
        if suite.name in first_file:
            message = f'duplicate suite name "{suite.name}"; first in {first_file[suite.name]}'
            errors.append(FieldError(f"{file.name}: name", message))
            continue
        first_file[suite.name] = file.name
        suites.append((file.name, suite))
    if errors:
        raise InvalidDefinition(errors)
    return suites
