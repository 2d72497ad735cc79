"""The step kinds the runner can run, by name."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from runwire.runner.steps.base import StepContext, StepKind, StepResult
from runwire.runner.steps.http import HttpParams, HttpStep
from runwire.runner.steps.shell import ShellParams, ShellStep
from runwire.runner.steps.sleep import SleepParams, SleepStep

__all__ = [
    "STEP_KINDS",
    "HttpParams",
    "HttpStep",
    "ShellParams",
    "ShellStep",
    "SleepParams",
    "SleepStep",
    "StepContext",
    "StepKind",
    "StepResult",
]

_KINDS: tuple[StepKind[Any], ...] = (ShellStep(), HttpStep(), SleepStep())
STEP_KINDS: Mapping[str, StepKind[Any]] = MappingProxyType({kind.name: kind for kind in _KINDS})
