"""Reviews: the review queue, submitReview, and the queue live."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from runwire.domain import reviews
from runwire.domain.access import Permission
from runwire.domain.models import ExecutionStatus as DomainStatus
from runwire.domain.queries import ExecutionFilter
from runwire.errors import FieldError, Invalid, RunwireError
from runwire.graphql.schema.auth import authorized
from runwire.graphql.schema.context import Info, core
from runwire.graphql.schema.errors import ErrorType, to_error
from runwire.graphql.schema.types import Execution, ScenarioInput, StepRun, steps_of

ReviewStatus = strawberry.enum(reviews.ReviewStatus, name="ReviewStatus")
MAX_REVIEWS = 200


@strawberry.type(
    description=(
        "One attempt of a review step: what reviewers are asked, the form they fill in, and,"
        " once closed, what was decided, by whom (a timeout is system:review-timeout)."
    )
)
class Review:
    execution_id: strawberry.ID
    step_key: str
    attempt: int
    status: ReviewStatus  # type: ignore[valid-type]
    title: str
    instructions: str = strawberry.field(
        description="Rendered with the execution's inputs and steps."
    )
    decisions: list[str]
    fail_on: list[str] = strawberry.field(description="Decisions that fail the step.")
    form: list[ScenarioInput] = strawberry.field(
        description="The fields to fill in, typed as scenario inputs are."
    )
    on_timeout: str = strawberry.field(
        description="What its timeout does: fail, skip, or one of the decisions."
    )
    requested_at: datetime
    expires_at: datetime | None = strawberry.field(description="Null: it waits until decided.")
    decision: str | None
    values: JSON | None
    comment: str | None
    decided_by: str | None
    decided_at: datetime | None
    shows: strawberry.Private[tuple[str, ...]]

    @strawberry.field(description="The execution it belongs to.")
    async def execution(self, info: Info) -> Execution | None:
        actor = authorized(info, Permission.EXECUTION_READ)
        found = await core(info).store.executions.execution(
            str(self.execution_id), workspace=actor.workspace_id, with_steps=False
        )
        return Execution.of(found) if found else None

    @strawberry.field(
        description=(
            "The latest attempts of the steps it shows reviewers (its `show` list): their"
            " outputs, artifacts with download links, and transcripts."
        )
    )
    async def shown_steps(self, info: Info) -> list[StepRun]:
        actor = authorized(info, Permission.EXECUTION_READ)
        if not self.shows:
            return []
        found = core(info)
        execution = await found.store.executions.execution(
            str(self.execution_id), workspace=actor.workspace_id, with_steps=False
        )
        if execution is None:
            return []
        runs = await found.store.executions.steps(execution.id)
        listed = {run.key: run for run in steps_of(execution.id, execution.definition, runs)}
        return [listed[key] for key in self.shows if key in listed]

    @classmethod
    def of(cls, review: reviews.Review) -> Review:
        request = review.request
        form: dict[str, Any] = request.get("form") or {}
        return cls(
            execution_id=strawberry.ID(review.execution_id),
            step_key=review.step_key,
            attempt=review.attempt,
            status=review.status,
            title=str(request.get("title", "")),
            instructions=str(request.get("instructions", "")),
            decisions=list(request.get("decisions") or ()),
            fail_on=list(request.get("fail_on") or ()),
            form=[
                ScenarioInput(
                    name=name,
                    type=str(spec.get("type")),
                    required=bool(spec.get("required")),
                    default=spec.get("default"),
                    description=spec.get("description"),
                    enum=spec.get("enum"),
                )
                for name, spec in form.items()
            ],
            on_timeout=str(request.get("on_timeout", "")),
            requested_at=review.requested_at,
            expires_at=review.expires_at,
            decision=review.decision,
            values=None if review.values is None else JSON(dict(review.values)),
            comment=review.comment,
            decided_by=review.decided_by,
            decided_at=review.decided_at,
            shows=tuple(request.get("show") or ()),
        )


@strawberry.type
class SubmitReviewSuccess:
    execution: Execution


SubmitReviewResult = Annotated[
    SubmitReviewSuccess | ErrorType, strawberry.union("SubmitReviewResult")
]


@strawberry.type(
    description=(
        "An execution's reviews changed: it began or stopped waiting for a review. Replace"
        " what a list shows for the execution with `reviews`."
    )
)
class ReviewUpdate:
    execution_id: strawberry.ID
    reviews: list[Review] = strawberry.field(
        description="Its reviews of the subscribed status (all of them without one)."
    )


@strawberry.type
class ReviewQueries:
    @strawberry.field(
        description=(
            "The workspace's reviews, oldest request first; reviews(status: PENDING) is the"
            " review queue."
        )
    )
    async def reviews(
        self,
        info: Info,
        status: ReviewStatus | None = None,  # type: ignore[valid-type]
        execution_id: strawberry.ID | None = None,
        first: int = 50,
    ) -> list[Review]:
        actor = authorized(info, Permission.EXECUTION_READ)
        if not 0 <= first <= MAX_REVIEWS:
            raise Invalid([FieldError("first", f"expected 0..{MAX_REVIEWS}")])
        found = await core(info).reviews.reviews(
            actor,
            status=status,
            execution_id=None if execution_id is None else str(execution_id),
            first=first,
        )
        return [Review.of(review) for review in found]


@strawberry.type
class ReviewMutations:
    @strawberry.mutation(
        description=(
            "Decide a review step that is waiting (review:write): the decision must be one of"
            " the step's, and the values fit its form. The step's output is the values plus"
            " `decision`; the execution goes on, or ends if the decision fails the step."
        )
    )
    async def submit_review(
        self,
        info: Info,
        execution_id: strawberry.ID,
        step_key: str,
        decision: str,
        values: JSON | None = None,
        comment: str | None = None,
    ) -> SubmitReviewResult:
        try:
            actor = authorized(info, Permission.REVIEW_WRITE)
            if values is not None and not isinstance(values, dict):
                raise Invalid([FieldError("values", "expected an object of field values")])
            execution = await core(info).reviews.submit(
                str(execution_id), step_key, decision, values, comment, actor
            )
        except RunwireError as error:
            return to_error(error)
        return SubmitReviewSuccess(execution=Execution.of(execution))


@strawberry.type
class ReviewSubscriptions:
    @strawberry.subscription(
        description=(
            "The review queue live: one message whenever an execution starts or stops waiting"
            " for a review, with its reviews of `status` (PENDING by default). Read the queue"
            " with reviews(status:) after subscribing. Never completes."
        )
    )
    async def review_updates(
        self,
        info: Info,
        status: ReviewStatus | None = reviews.ReviewStatus.PENDING,  # type: ignore[valid-type]
    ) -> AsyncGenerator[ReviewUpdate, None]:
        actor = authorized(info, Permission.EXECUTION_READ)
        found = core(info)
        # Entering WAITING, and the change that takes an execution out of it.
        where = ExecutionFilter(workspace=actor.workspace_id, statuses=(DomainStatus.WAITING,))
        async with aclosing(found.hub.watch(where)) as updates:
            async for update in updates:
                execution_id = update.execution.id
                listed = await found.reviews.reviews(
                    actor, status=status, execution_id=execution_id, first=MAX_REVIEWS
                )
                yield ReviewUpdate(
                    execution_id=strawberry.ID(execution_id),
                    reviews=[Review.of(review) for review in listed],
                )
