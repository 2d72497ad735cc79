"""The graphql packages' layers: schema over fanout, library internals behind fanout/compat."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GRAPHQL = Path(__file__).parents[2] / "server" / "runwire" / "graphql"
BELOW_NEITHER = ("runwire.app", "runwire.http", "runwire.db")


def imported_by(package: str) -> dict[str, set[str]]:
    """Every module a package's files import, by file."""
    found: dict[str, set[str]] = {}
    for path in sorted((GRAPHQL / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(GRAPHQL))] = names
    return found


@pytest.mark.parametrize("package", ["schema", "fanout"])
def test_neither_imports_the_app_http_or_the_database(package: str) -> None:
    for path, names in imported_by(package).items():
        reaching = {name for name in names if name.startswith(BELOW_NEITHER)}
        assert not reaching, f"{path} imports {reaching}"


def test_the_delivery_engine_never_imports_the_schema() -> None:
    for path, names in imported_by("fanout").items():
        schema = {name for name in names if name.startswith("runwire.graphql.schema")}
        assert not schema, f"{path} imports {schema}"


# Modules of the libraries that Runwire reaches into: only their compat module may import them.
INTERNALS = (
    "strawberry.schema.schema",
    "strawberry.litestar.controller",
    "strawberry.subscriptions.protocols",
    "strawberry.types.field",
    "graphql.execution.collect_fields",
    "graphql.validation.rules",
)


def test_library_internals_are_imported_by_compat_modules_only() -> None:
    for package in ("schema", "fanout"):
        for path, names in imported_by(package).items():
            if path.startswith("fanout/compat/"):
                continue
            internal = {name for name in names if name.startswith(INTERNALS)}
            assert not internal, f"{path} imports {internal}: go through fanout/compat/"
