"""The `runwire` command as an operator first meets it: -h, --version, the variables its help
lists, and admin commands run where no database is (a real subprocess each)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runwire import __version__
from runwire.settings import VARIABLES

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_SOURCE = ROOT / "server" / "runwire" / "settings.py"


def _runwire(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    return subprocess.run(
        [sys.executable, "-m", "runwire.cli", *args],
        cwd=cwd,
        env=clean | env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _read_in_settings() -> set[str]:
    """Every RUNWIRE_ variable settings.py reads: named whole, or by its helpers' short names."""
    source = SETTINGS_SOURCE.read_text()
    whole = set(re.findall(r"env(?:\.get\(|\[)\"RUNWIRE_([A-Z0-9_]+)\"", source))
    short = set(re.findall(r"\b(?:text|flag|number)\(\s*\"([A-Z0-9_]+)\"", source))
    return whole | short


def test_help_takes_h_everywhere_and_version_prints_the_package_version(tmp_path: Path) -> None:
    for args in (("-h",), ("token", "-h"), ("token", "list", "-h"), ("serve", "-h")):
        done = _runwire(*args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stdout.startswith("Usage: "), args

    version = _runwire("--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"runwire, version {__version__}"


def test_serve_and_worker_help_list_every_variable_settings_reads(tmp_path: Path) -> None:
    read = _read_in_settings()
    assert len(read) > 50  # the pattern still finds what settings.py reads
    assert {v.name for v in VARIABLES} == read  # the table neither misses nor invents one
    readme_table = {
        name
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `RUNWIRE_")
        for name in re.findall(r"`RUNWIRE_([A-Z0-9_]+)`", line.split("|")[1])
    }
    assert read - readme_table == set(), "README's settings table misses these"

    for command in ("serve", "worker"):
        shown = _runwire(command, "--help", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        listed = re.findall(r"^\s+RUNWIRE_([A-Z0-9_]+)\s", shown.stdout, re.MULTILINE)
        assert sorted(listed) == sorted(read), command
    help_text = " ".join(shown.stdout.split())
    assert "RUNWIRE_PORT port to listen on (also --port) (default: 8000)" in help_text
    assert "(default: 10 MiB)" in help_text  # RUNWIRE_OUTPUT_STEP_BYTES, from the dataclass


@pytest.mark.parametrize(
    "command", [("token", "list"), ("workspace", "create", "x"), ("secret", "set", "KEY")]
)
def test_admin_commands_refuse_to_create_a_database_where_none_is(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    done = _runwire(*command, cwd=tmp_path)

    assert done.returncode == 1
    expected = tmp_path / "data" / "runwire.sqlite"
    assert done.stderr.strip().splitlines() == [
        f"Error: no database at {expected}: run this where `runwire serve` ran (its data"
        " directory is ./data unless RUNWIRE_DATA_DIR says otherwise), or set"
        " RUNWIRE_DATABASE_URL"
    ]
    assert not (tmp_path / "data").exists()


def test_admin_errors_name_the_database_they_opened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runwire.sqlite'}"
    assert _runwire("migrate", cwd=tmp_path, RUNWIRE_DATABASE_URL=url).returncode == 0

    missing = _runwire(
        "token", "list", "--workspace", "nope", cwd=tmp_path, RUNWIRE_DATABASE_URL=url
    )

    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"Error: workspace nope not found (see `runwire workspace list`); database: {url}"
    )

    secret_url = "postgresql://postgres:hunter2@127.0.0.1:1/runwire"  # port 1: nothing listens
    unreachable = _runwire("workspace", "list", cwd=tmp_path, RUNWIRE_DATABASE_URL=secret_url)
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith(
        "Error: cannot use database postgresql://postgres:***@127.0.0.1:1/runwire: "
    )
    assert len(unreachable.stderr.strip().splitlines()) == 1, unreachable.stderr
    assert "hunter2" not in unreachable.stderr
