"""Contract tests' verdicts: a broken assumption names itself, its library and that version."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version

import pytest


class Contract:
    """What one compat module assumes of one library, checked against the installed version."""

    def __init__(self, distribution: str, compat_module: str) -> None:
        self.distribution = distribution
        self.compat_module = compat_module

    def broken(self, assumption: str) -> str:
        return (
            f"{self.distribution} {version(self.distribution)} breaks an assumption of"
            f" server/runwire/graphql/fanout/compat/{self.compat_module}.py: {assumption}"
        )

    @contextmanager
    def holds(self, assumption: str) -> Iterator[None]:
        """Fail with the assumption's name if the block fails an assert or raises."""
        failure: str | None = None
        try:
            yield
        except Exception as error:  # AssertionError included: the assumption failed its check
            failure = f"{type(error).__name__}: {error}"
        if failure is not None:
            # From None: the verdict alone, not the assert it came from as well.
            raise pytest.fail.Exception(
                f"{self.broken(assumption)}\n  ({failure})", pytrace=False
            ) from None
