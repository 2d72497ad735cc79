"""The `sleep` step: wait a number of seconds."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from runwire.runner.steps.base import StepContext, StepResult
from runwire.runner.steps.params import Fields


@dataclass(frozen=True, slots=True)
class SleepParams:
    """How long to sleep; a template string until the params are rendered."""

    seconds: float | str


class SleepStep:
    """Wait `seconds`, emitting no output."""

    name = "sleep"
    runs_processes = False  # who may start it inline: see ExecutionService.admit

    def idempotent(self, params: SleepParams) -> bool:
        return True

    def parse(self, params: Any, path: str) -> SleepParams:
        fields = Fields(params, path, {"seconds"})
        fields.require("seconds")
        seconds = fields.number("seconds", 0.0)
        fields.check()
        return SleepParams(seconds)

    async def run(self, params: SleepParams, context: StepContext) -> StepResult:
        if isinstance(params.seconds, str):
            return StepResult(error="seconds is an unrendered template")
        started = time.monotonic()
        await asyncio.sleep(params.seconds)
        return StepResult(output={"slept_seconds": round(time.monotonic() - started, 3)})
