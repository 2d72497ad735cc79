"""Artifacts: files a step attempt keeps (a call's recording, its transcript, a report).

A step stores one through its context (`StepContext.artifact`); the content is a row of the
database, so every process of a deployment (API replicas, workers) serves what any runner stored,
with no shared disk, on SQLite and Postgres alike. A name is unique per attempt: storing it again
replaces the content. Downloads carry a short signed ticket (domain/identity.py), never a token.
Artifacts older than the retention are deleted by `runwire.retention`, in every process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from runwire.errors import RunwireError

NAME_CHARS = 128
MEDIA_TYPE_CHARS = 100
# A file name that is the same on every system and safe in a Content-Disposition header: no
# path separators, no leading dot (hidden files, `..`), no spaces or quotes.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# type/subtype with optional parameters (`text/plain; charset=utf-8`), as RFC 6838 allows.
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[^\"\\\r\n]*\"|[A-Za-z0-9!#$&^_.+-]+))*"
)


class InvalidArtifact(RunwireError):
    """The artifact cannot be stored."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """What is known of a stored artifact, without its content."""

    id: str
    workspace_id: str
    execution_id: str
    step_key: str
    attempt: int
    name: str
    media_type: str
    bytes: int
    created_at: datetime


def check_artifact(name: str, media_type: str, size: int, max_bytes: int) -> None:
    """Raise InvalidArtifact naming what is wrong with a name, media type or size."""
    if not 0 < len(name) <= NAME_CHARS or not _NAME.fullmatch(name):
        raise InvalidArtifact(
            f"artifact name {name[:NAME_CHARS]!r}: must be 1 to {NAME_CHARS} letters, digits,"
            " '.', '_' or '-', not starting with '.' or '-'"
        )
    if len(media_type) > MEDIA_TYPE_CHARS or not _MEDIA_TYPE.fullmatch(media_type):
        raise InvalidArtifact(
            f"artifact {name}: media type {media_type[:MEDIA_TYPE_CHARS]!r} is not type/subtype"
        )
    if size > max_bytes:
        raise InvalidArtifact(
            f"artifact {name}: {size:,} bytes, over the {max_bytes:,}-byte limit"
            " (RUNWIRE_ARTIFACT_MAX_BYTES)"
        )


def download_path(artifact_id: str, ticket: str) -> str:
    """The download URL (path and query) of an artifact, with a ticket for it."""
    return f"/artifacts/{artifact_id}?ticket={ticket}"


def is_text(media_type: str) -> bool:
    """Whether content of this type is text the runner can redact secrets from."""
    base = media_type.split(";", 1)[0].strip().lower()
    return base.startswith("text/") or base in {"application/json", "application/x-ndjson"}


class ArtifactStore(Protocol):
    """Where artifacts are kept (db/artifacts.py)."""

    async def put_artifact(
        self,
        execution_id: str,
        step_key: str,
        attempt: int,
        name: str,
        media_type: str,
        content: bytes,
        at: datetime,
        generation: int | None,
    ) -> Artifact | None:
        """Store (or replace) it; None when `generation` no longer holds the execution."""
        ...

    async def delete_artifacts_before(self, cutoff: datetime) -> int:
        """Delete artifacts created before `cutoff`; how many."""
        ...
