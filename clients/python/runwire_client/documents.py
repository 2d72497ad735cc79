"""The canonical operations (schema/operations), shipped inside the package and parsed once."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from gql import GraphQLRequest

# One named operation per file, the file named after it (a test keeps these byte-identical to
# schema/operations, the copy frontends feed to their code generators).
OPERATION_NAMES = (
    "StartExecution",
    "StopExecution",
    "PauseExecution",
    "ResumeExecution",
    "RetryStep",
    "SkipStep",
    "SubmitReview",
    "DeleteExecution",
    "GetExecution",
    "ExecutionHistory",
    "ExecutionTrace",
    "FollowExecutionEvents",
    "LiveExecutions",
    "Viewer",
    "CreateEventStreamTicket",
    "StartSuiteRun",
    "GetSuiteRun",
    "CompareSuiteRuns",
    "ListScenarios",
    "QueueHealth",
    "Reviews",
    "ReviewUpdates",
)


def text(name: str) -> str:
    """The operation's document as shipped."""
    if name not in OPERATION_NAMES:
        raise KeyError(f"no canonical operation {name!r}")
    return (files("runwire_client") / "operations" / f"{name}.graphql").read_text(encoding="utf-8")


@cache
def _parsed(name: str) -> GraphQLRequest:
    return GraphQLRequest(text(name), operation_name=name)


def request(name: str, variables: dict[str, Any]) -> GraphQLRequest:
    """The named operation with these variables, its document parsed only the first time."""
    return GraphQLRequest(_parsed(name), variable_values=variables)
