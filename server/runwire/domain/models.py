"""Executions, step runs and events as plain frozen values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ExecutionStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        return self in EXECUTION_TERMINAL


EXECUTION_TERMINAL = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.TIMED_OUT,
    }
)


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    SKIPPED = "SKIPPED"

    @property
    def is_terminal(self) -> bool:
        return self is not StepStatus.PENDING and self is not StepStatus.RUNNING


class EventType(StrEnum):
    EXECUTION_STATUS = "EXECUTION_STATUS"
    STEP_STATUS = "STEP_STATUS"
    OUTPUT = "OUTPUT"


class OutputStream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    LOG = "log"


@dataclass(frozen=True, slots=True)
class Event:
    """One change in an execution; `seq` is 1, 2, 3, … per execution with no gaps."""

    execution_id: str
    seq: int
    at: datetime
    type: EventType
    data: Mapping[str, Any]
    step_key: str | None = None
    attempt: int | None = None

    @property
    def is_terminal(self) -> bool:
        return (
            self.type is EventType.EXECUTION_STATUS
            and ExecutionStatus(self.data["status"]).is_terminal
        )


@dataclass(frozen=True, slots=True)
class ScenarioVersion:
    """One saved version of a named scenario; editing creates the next version."""

    name: str
    version: int
    description: str
    definition: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StepRun:
    """One attempt of one step."""

    execution_id: str
    key: str
    kind: str
    attempt: int
    position: int
    status: StepStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    output: Any = None
    error: str | None = None

    @property
    def duration_ms(self) -> int | None:
        return _duration_ms(self.started_at, self.finished_at)


@dataclass(frozen=True, slots=True)
class Execution:
    id: str
    status: ExecutionStatus
    definition: Mapping[str, Any]
    inputs: Mapping[str, Any]
    queued_at: datetime
    scenario_name: str | None = None
    scenario_version: int | None = None
    labels: tuple[str, ...] = ()
    priority: int = 0
    timeout_seconds: float | None = None
    grace_seconds: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    last_seq: int = 0
    owner: str | None = None
    steps: tuple[StepRun, ...] = field(default=())

    @property
    def name(self) -> str:
        return str(self.definition.get("name") or self.scenario_name or "")

    @property
    def duration_ms(self) -> int | None:
        return _duration_ms(self.started_at, self.finished_at)


@dataclass(frozen=True, slots=True)
class Activity:
    """An audit record: who did what to which execution, and why."""

    action: str
    actor: str
    execution_id: str | None
    at: datetime
    detail: Mapping[str, Any]


def _duration_ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() * 1000)
