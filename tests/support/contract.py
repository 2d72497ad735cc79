"""Contract tests' verdicts: a broken assumption names itself, its library and its version."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version

import pytest


class Contract:
    """What compat modules assume of their libraries, checked against the installed versions."""

    def __init__(
        self,
        distribution: str,
        compat_module: str,
        *more: tuple[str, str],
        place: str = "server/runwire/graphql/fanout/compat",
    ) -> None:
        # Pairs of (distribution, compat module); several where an assumption spans libraries.
        self.guarded = ((distribution, compat_module), *more)
        self.place = place

    def broken(self, assumption: str) -> str:
        libraries = ", ".join(f"{name} {version(name)}" for name, _ in self.guarded)
        modules = ", ".join(f"{self.place}/{module}.py" for _, module in self.guarded)
        return f"{libraries}: an assumption of {modules} no longer holds: {assumption}"

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
