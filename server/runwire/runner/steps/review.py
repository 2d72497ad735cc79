"""The `review` step: a person decides it, through submitReview or its timeout.

The runner never runs it as it runs other kinds: it stores the rendered request as the attempt's
WAITING event and lets the execution go (WAITING, holding no slot). The decision, made without a
runner (domain/reviews.py), ends the attempt and queues the execution to go on.
"""

from __future__ import annotations

from typing import Any

from runwire.errors import RunwireError
from runwire.runner.steps.base import StepContext, StepResult
from runwire.scenarios.reviews import REVIEW_KIND, ReviewSpec, parse_review


class ReviewStep:
    """Ask reviewers to decide, with a typed form; see scenarios/reviews.py for the fields."""

    name = REVIEW_KIND
    runs_processes = False  # who may start it inline: see ExecutionService.admit
    # The runner stores its request and waits for people instead of calling run().
    waits_for_people = True

    def idempotent(self, params: ReviewSpec) -> bool:
        return True  # asking again is harmless: nothing was decided

    def parse(self, params: Any, path: str) -> ReviewSpec:
        return parse_review(params, path)

    def steps_shown(self, params: ReviewSpec) -> tuple[str, ...]:
        """Checked by the definition: each must finish before the review starts."""
        return params.show

    async def run(self, params: ReviewSpec, context: StepContext) -> StepResult:
        raise RunwireError("a review step is decided by people (submitReview), not run")
