"""The sleep step: waits, reports how long, and stops at once when cancelled."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.support.steps import RecordingContext

from runwire.runner.steps import STEP_KINDS

sleep = STEP_KINDS["sleep"]


async def test_sleeps_and_reports_the_time_without_output() -> None:
    context = RecordingContext()
    result = await sleep.run(sleep.parse({"seconds": 0.05}, "with"), context)
    assert result.error is None
    assert 0.05 <= result.output["slept_seconds"] < 0.5
    assert context.calls == []


async def test_an_unrendered_template_fails_the_step() -> None:
    result = await sleep.run(
        sleep.parse({"seconds": "{{ inputs.wait }}"}, "with"), RecordingContext()
    )
    assert result.error == "seconds is an unrendered template"


async def test_cancellation_propagates_at_once() -> None:
    task = asyncio.create_task(sleep.run(sleep.parse({"seconds": 30}, "with"), RecordingContext()))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Far below the 30 s it would sleep, with room for a loaded machine's slow loop.
    assert time.monotonic() - started < 5
