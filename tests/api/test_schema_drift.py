"""schema/schema.graphql is the exported contract; it must match the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCHEMA = Path(__file__).parents[2] / "schema" / "schema.graphql"


def test_exported_schema_matches_the_committed_contract() -> None:
    exported = subprocess.run(
        [sys.executable, "-m", "runwire.cli", "export-schema"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert exported == SCHEMA.read_text(), (
        "schema drifted: run `runwire export-schema > schema/schema.graphql` and review the diff"
    )
