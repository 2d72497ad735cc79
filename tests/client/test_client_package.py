"""The client package: its operations, its schema stamp, and installing it without the server."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import runwire_client
from graphql import OperationDefinitionNode, build_schema, parse, validate
from runwire_client import documents

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schema" / "schema.graphql"
OPERATIONS = ROOT / "schema" / "operations"
PACKAGE = ROOT / "clients" / "python"
PACKAGED = PACKAGE / "runwire_client" / "operations"


def test_the_packaged_operations_are_byte_identical_to_schema_operations() -> None:
    canonical = {path.name: path.read_bytes() for path in OPERATIONS.glob("*.graphql")}
    packaged = {path.name: path.read_bytes() for path in PACKAGED.glob("*.graphql")}
    assert packaged == canonical, "copy schema/operations/*.graphql into the client package"
    assert sorted(f"{name}.graphql" for name in documents.OPERATION_NAMES) == sorted(canonical)


def test_every_operation_is_one_named_operation_valid_against_the_schema() -> None:
    schema = build_schema(SCHEMA.read_text())
    for path in sorted(OPERATIONS.glob("*.graphql")):
        document = parse(path.read_text())
        assert validate(schema, document) == [], path.name
        [operation] = document.definitions
        assert isinstance(operation, OperationDefinitionNode), path.name
        assert operation.name is not None
        assert operation.name.value == path.stem
        # What the client reads is what is on disk here.
        assert documents.text(path.stem) == path.read_text()


def test_the_client_names_the_schema_it_was_written_against() -> None:
    current = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert current == runwire_client.SCHEMA_SHA256, (
        "schema/schema.graphql changed: check the client's operations and types against it,"
        " then update SCHEMA_SHA256 (and the version) in runwire_client/version.py"
    )


def test_the_version_is_the_distributions() -> None:
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    assert project["name"] == "runwire-client"
    assert project["version"] == runwire_client.__version__
    # Its own dependencies only: nothing of the server.
    names = {
        dependency.split("[")[0].split(">")[0].strip() for dependency in project["dependencies"]
    }
    assert names == {"gql", "click", "rich"}


def _without_pythonpath() -> dict[str, str]:
    """The caller's environment for pip without PYTHONPATH, which reaches the fresh environment's
    interpreter too: a source checkout of the client on it reads as already installed there."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def test_the_wheel_installs_and_works_without_the_server(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            str(PACKAGE),
            "-w",
            str(tmp_path),
        ],
        env=_without_pythonpath(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("runwire_client-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "runwire_client/py.typed" in names
    assert {f"runwire_client/operations/{n}.graphql" for n in documents.OPERATION_NAMES} <= names

    # A fresh environment with only the wheel and what it declares (not even pip: this pip
    # installs into it, which spares seconds of bootstrapping one).
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    subprocess.run(
        # No bytecode compiled: seconds for the dependencies, and nothing the check below needs.
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-compile",
            str(wheel),
        ],
        env=_without_pythonpath(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    check = """
import sys
import runwire_client
from runwire_client import documents
assert documents.text("FollowExecutionEvents").startswith("#")
server = sorted(m for m in sys.modules if m.split(".")[0] in {"runwire", "strawberry", "litestar"})
assert not server, server
print(runwire_client.__version__)
"""
    shown = subprocess.run(
        [str(python), "-I", "-c", check], check=True, capture_output=True, text=True, timeout=60
    )
    assert shown.stdout.strip() == runwire_client.__version__
