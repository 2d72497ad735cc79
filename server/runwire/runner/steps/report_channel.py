"""A step process's report channel: NDJSON records on a descriptor, into the step's trace.

A process step's command finds the write end of a pipe at descriptor `REPORT_FD` (named by
`RUNWIRE_REPORT_FD` in its environment) and may write records to it, one JSON object a line
(report_records.py, docs/report-channel.md): usage, spans, named outputs, transcript entries,
artifacts. The server reads them as they come and reports them through the step's context, like a
built-in kind would. A record it cannot use is counted, never fatal; the step's log says once what
was ignored.

One channel is one attempt's: open it around the spawn, give the reaper `descriptors`, put
`environment(...)` in the command's environment, and await `finish()` (the named outputs) once
the command has ended. The command only ever holds a write end: there is nothing of the server's
it could read through it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any

import msgspec

from runwire.domain.agents import AgentEntry, Usage
from runwire.domain.models import OutputStream
from runwire.errors import RunwireError
from runwire.faults import is_outage
from runwire.runner.spans import new_span_id
from runwire.runner.steps.base import StepContext
from runwire.runner.steps.report_records import (
    BAD_FIELD,
    RECORD_BYTES,
    TOO_LARGE,
    ArtifactRecord,
    BadRecord,
    OutputRecord,
    Record,
    SpanRecord,
    parse_record,
)

logger = logging.getLogger(__name__)

# An artifact the database did not take (out of reach, or refused it).
NOT_STORED = "not stored"

REPORT_FD = 3
"""The command's descriptor number: one digit, so `sh` can write `>&3` (dash takes no more)."""

REPORT_FD_VARIABLE = "RUNWIRE_REPORT_FD"

OUTPUTS_BYTES = 256 * 1024
"""How much JSON the named outputs of one attempt may hold in all (they travel in its events)."""

_READ_BYTES = 64 * 1024
# At the end, what is left in the pipe is read at once; a pipe holds 64 KiB unless enlarged, and
# whatever wrote it has ended, so this bound is only a guard.
_DRAIN_BYTES = 16 * 1024 * 1024


class ReportChannel:
    """One attempt's report pipe: read as records arrive, closed when the block ends."""

    def __init__(self, context: StepContext, reserved: Collection[str] = ()) -> None:
        """`reserved`: names the kind's own output already uses, refused as named outputs."""
        self._context = context
        self._reserved = frozenset(reserved)
        self._read = self._write = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._resuming: asyncio.Future[None] | None = None
        self._pending = bytearray()
        self._skipping = 0  # bytes of an over-long record read so far, while skipping it
        self._records = 0
        self._ignored: dict[str, int] = {}
        self._first_problem: str | None = None
        self._span_ids: dict[str, str] = {}  # the reporter's span ids -> ours
        self._spans_seen: set[str] = set()
        self._outputs: dict[str, Any] = {}
        self._output_bytes: dict[str, int] = {}
        self._finished = False
        self._saving: asyncio.Future[None] | None = None  # the last artifact being stored

    async def __aenter__(self) -> ReportChannel:
        self._loop = asyncio.get_running_loop()
        self._read, self._write = os.pipe()  # both close-on-exec: only the reaper passes it on
        # Write-only for all: a command may open /dev/fd/3 (as another user too), but cannot
        # reopen the pipe there to read what is in it.
        os.fchmod(self._write, 0o222)
        os.set_blocking(self._read, False)
        self._start_reading()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self.finish()
        finally:
            self._close()

    @property
    def descriptors(self) -> Mapping[int, int]:
        """The command's descriptor number -> ours it is a copy of (for `Supervision.wrap`)."""
        return {REPORT_FD: self._write}

    def environment(self, declared: Mapping[str, str] | None) -> dict[str, str]:
        """The step's declared environment, with the variable that names the descriptor."""
        return {**(declared or {}), REPORT_FD_VARIABLE: str(REPORT_FD)}

    async def finish(self) -> dict[str, Any]:
        """Read what is left (the command has ended), store the artifacts reported, say what
        was ignored; the named outputs."""
        if self._finished:
            return dict(self._outputs)
        self._finished = True
        try:
            self._drain()
        finally:
            # Every artifact reported is stored (or counted as ignored) before the step ends.
            if self._saving is not None:
                await self._saving
        self._report_ignored()
        return dict(self._outputs)

    def _drain(self) -> None:
        self._stop_reading()
        if self._resuming is not None:
            self._resuming.cancel()
        if self._write >= 0:
            os.close(self._write)  # ours only: with every copy gone, the read below ends
            self._write = -1
        left = _DRAIN_BYTES
        while left > 0 and self._read >= 0:
            try:
                data = os.read(self._read, _READ_BYTES)
            except BlockingIOError:
                break  # a straggler still holds a copy: what it writes later is not read
            if not data:
                break
            left -= len(data)
            self._feed(data)
        if self._pending and not self._skipping:
            self._handle(bytes(self._pending))  # a last record without its newline
        elif self._skipping:
            self._skipped(self._skipping, " and no end of line")
        self._pending.clear()

    # ---- reading ---------------------------------------------------------------------

    def _start_reading(self) -> None:
        if self._loop is not None and self._read >= 0 and not self._reading:
            self._loop.add_reader(self._read, self._readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._loop is not None and self._reading:
            self._loop.remove_reader(self._read)
            self._reading = False

    def _readable(self) -> None:
        try:
            data = os.read(self._read, _READ_BYTES)
        except BlockingIOError:
            return
        if not data:
            self._stop_reading()  # every writer has closed it: nothing more will come
            return
        self._feed(data)
        if self._context.backlogged() and self._resuming is None and not self._finished:
            # Back-pressure, as for output: the events are behind, so the command blocks on a
            # full pipe instead of the server holding its records in memory.
            self._stop_reading()
            self._resuming = asyncio.ensure_future(self._resume_when_room())

    async def _resume_when_room(self) -> None:
        try:
            await self._context.room()
        finally:
            self._resuming = None
        if not self._finished:
            self._start_reading()

    def _feed(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            piece = data[start:end]
            start = end + 1
            if self._skipping:
                self._skipped(self._skipping + len(piece), "")
                self._skipping = 0
                continue
            if self._pending:
                self._pending += piece
                line = bytes(self._pending)
                self._pending.clear()
            else:
                line = piece
            self._handle(line)
        rest = data[start:]
        if self._skipping:
            self._skipping += len(rest)
        elif len(self._pending) + len(rest) > RECORD_BYTES:
            # No line this long is a record: stop keeping it, and skip to its end.
            self._skipping = len(self._pending) + len(rest)
            self._pending.clear()
        else:
            self._pending += rest

    def _close(self) -> None:
        self._stop_reading()
        for fd in (self._read, self._write):
            if fd >= 0:
                os.close(fd)
        self._read = self._write = -1

    # ---- records ---------------------------------------------------------------------

    def _handle(self, line: bytes) -> None:
        if not line.strip():
            return  # a blank line is no record
        self._records += 1
        try:
            record = parse_record(line)
            self._apply(record)
        except BadRecord as bad:
            self._count(bad.problem, str(bad))

    def _apply(self, record: Record) -> None:
        context = self._context
        if isinstance(record, Usage):
            context.usage(record)
        elif isinstance(record, AgentEntry):
            context.entry(record)
        elif isinstance(record, SpanRecord):
            self._span(record)
        elif isinstance(record, ArtifactRecord):
            # Stored in order, one at a time (the same name twice: the last one wins), while
            # the channel reads on; `finish` waits for the last.
            self._saving = asyncio.ensure_future(self._save(record, self._records, self._saving))
        else:
            self._output(record)

    def _span(self, record: SpanRecord) -> None:
        span_id = None
        if record.id is not None:
            if record.id in self._spans_seen:
                raise BadRecord(BAD_FIELD, f"span.id: {record.id!r} was reported already")
            self._spans_seen.add(record.id)
            span_id = self._our_span_id(record.id)
        parent_id = None if record.parent_id is None else self._our_span_id(record.parent_id)
        self._context.span(
            record.name,
            record.kind,
            record.started_at,
            record.finished_at,
            record.status,
            record.attributes,
            parent_id=parent_id,
            span_id=span_id,
        )

    async def _save(
        self, record: ArtifactRecord, number: int, previous: asyncio.Future[None] | None
    ) -> None:
        if previous is not None:
            await previous  # it never raises but CancelledError: failures are counted
        try:
            await self._context.artifact(record.name, record.media_type, record.content)
        except RunwireError as error:
            self._count(BAD_FIELD, f"artifact: {error.message}", number)
        except Exception as error:
            if not is_outage(error):
                logger.exception("artifact %s of a step not stored", record.name)
            self._count(NOT_STORED, f"artifact {record.name}: {error!r}", number)

    def _our_span_id(self, theirs: str) -> str:
        """A fresh id per reporter id: unique in the execution, whatever the reporter chose.

        A child names its parent before the parent (which ends later) is reported; a parent
        never reported leaves its children under the step attempt (the trace's rule).
        """
        if theirs not in self._span_ids:
            self._span_ids[theirs] = new_span_id()
        return self._span_ids[theirs]

    def _output(self, record: OutputRecord) -> None:
        if record.name in self._reserved:
            reserved = ", ".join(sorted(self._reserved))
            message = f"output.name: {record.name!r} is the step's own ({reserved})"
            raise BadRecord(BAD_FIELD, message)
        size = len(msgspec.json.encode(record.value))
        total = sum(self._output_bytes.values()) - self._output_bytes.get(record.name, 0) + size
        if total > OUTPUTS_BYTES:
            raise BadRecord(
                BAD_FIELD,
                f"output.value: {record.name!r} would make the named outputs {total:,} bytes,"
                f" over the {OUTPUTS_BYTES:,}-byte limit",
            )
        self._outputs[record.name] = record.value  # a name reported again: the last value wins
        self._output_bytes[record.name] = size

    def _skipped(self, size: int, reason: str) -> None:
        """A line too long to keep was skipped to its end (or to the end of the channel)."""
        self._records += 1
        self._count(TOO_LARGE, f"{size:,} bytes{reason}, over the {RECORD_BYTES:,}-byte limit")

    def _count(self, problem: str, reason: str, number: int | None = None) -> None:
        self._ignored[problem] = self._ignored.get(problem, 0) + 1
        if self._first_problem is None:
            self._first_problem = f"record {number or self._records}: {problem}: {reason}"

    def _report_ignored(self) -> None:
        ignored = sum(self._ignored.values())
        if not ignored:
            return
        kinds = ", ".join(f"{count} {problem}" for problem, count in self._ignored.items())
        self._context.output(
            OutputStream.LOG,
            f"report channel: ignored {ignored} of {self._records} records ({kinds});"
            f" the first, {self._first_problem}",
        )
