"""The step kinds the runner can run, by name."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from runwire.runner.steps.agent import AgentParams, AgentStep
from runwire.runner.steps.base import StepContext, StepKind, StepResult
from runwire.runner.steps.call import CallStep
from runwire.runner.steps.call_script import CallScript
from runwire.runner.steps.confinement import Confinement
from runwire.runner.steps.http import HttpParams, HttpStep
from runwire.runner.steps.llm import LlmParams, LlmStep
from runwire.runner.steps.review import ReviewStep
from runwire.runner.steps.shell import ShellParams, ShellStep
from runwire.runner.steps.sleep import SleepParams, SleepStep
from runwire.settings import Settings

__all__ = [
    "STEP_KINDS",
    "AgentParams",
    "AgentStep",
    "CallScript",
    "CallStep",
    "HttpParams",
    "HttpStep",
    "LlmParams",
    "LlmStep",
    "ReviewStep",
    "ShellParams",
    "ShellStep",
    "SleepParams",
    "SleepStep",
    "StepContext",
    "StepKind",
    "StepResult",
    "step_kinds",
]


def step_kinds(settings: Settings | None = None) -> Mapping[str, StepKind[Any]]:
    """The shipped kinds, process steps confined as `settings` say (ValueError if they cannot).

    Without settings, the default ones are resolved when a process step first runs.
    """
    confinement = None if settings is None else Confinement.from_settings(settings)
    # Without settings, an llm step may name no server variable for its key.
    llm = LlmStep() if settings is None else LlmStep(settings.llm_key_vars, settings.llm_keys)
    kinds: tuple[StepKind[Any], ...] = (
        ShellStep(confinement),
        AgentStep(confinement),
        HttpStep(),
        llm,
        SleepStep(),
        ReviewStep(),
        CallStep()
        if settings is None
        else CallStep(settings.call_driver, settings.sip_local_host, settings.sip_public_host),
    )
    return MappingProxyType({kind.name: kind for kind in kinds})


# For checking definitions, and for running steps outside a server (the default confinement).
STEP_KINDS = step_kinds()
