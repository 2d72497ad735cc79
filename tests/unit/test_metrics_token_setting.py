"""RUNWIRE_METRICS_TOKEN: off by default, a value or a file, refused when too weak to guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from runwire.settings import Settings


def test_metrics_are_off_by_default() -> None:
    assert Settings.from_env({}).metrics_token is None
    assert Settings.from_env({"RUNWIRE_METRICS_TOKEN": ""}).metrics_token is None


def test_the_token_is_a_value_or_a_file_and_never_shown(tmp_path: Path) -> None:
    token = "k" * 32
    assert Settings.from_env({"RUNWIRE_METRICS_TOKEN": token}).metrics_token == token
    mounted = tmp_path / "scrape-token"
    mounted.write_text(token + "\n")
    settings = Settings.from_env({"RUNWIRE_METRICS_TOKEN": f"@{mounted}"})
    assert settings.metrics_token == token
    assert token not in repr(settings)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("short", "RUNWIRE_METRICS_TOKEN must be at least 16 characters without spaces"),
        ("a token with spaces", "RUNWIRE_METRICS_TOKEN must be at least 16 characters"),
        ("@/no/such/file", "RUNWIRE_METRICS_TOKEN: cannot read /no/such/file"),
    ],
)
def test_a_weak_or_missing_token_is_refused_by_name(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env({"RUNWIRE_METRICS_TOKEN": value})


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=f"RUNWIRE_METRICS_TOKEN: {empty} is empty"):
        Settings.from_env({"RUNWIRE_METRICS_TOKEN": f"@{empty}"})
