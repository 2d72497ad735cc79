"""Values that describe what to read: history filters, pages and queue counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from runwire.domain.models import ExecutionStatus

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    """History filters; every given field must match."""

    statuses: tuple[ExecutionStatus, ...] = ()
    scenario: str | None = None
    label: str | None = None
    queued_after: datetime | None = None
    queued_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """A keyset position in newest-first history: (queued_at, id) of the last row seen."""

    queued_at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    has_next: bool


@dataclass(frozen=True, slots=True)
class QueueCounts:
    queued: int
    running: int
    slots: int
