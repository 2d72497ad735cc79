"""Coalesce output pieces arriving within a few milliseconds into one chunk event.

Whole lines after a quiet spell (no chunk for a window) go out at once: coalescing is for bursts,
and holding a lone line for the window would only delay it. What follows within the window is
held and goes out as one chunk, so a burst still makes at most about one chunk per window.

A window of 0 turns coalescing off: every line is its own chunk event, and a line still missing
its newline goes out at the next pass of the event loop. Lines read together carry the one time
they were read at (one clock read per read, not per line).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from runwire.domain.clock import utc_now
from runwire.domain.models import OutputStream

_MAX_CHUNK_CHARS = 32 * 1024


class OutputCoalescer:
    """Buffers one stream at a time, so the interleaving of stdout and stderr is kept."""

    def __init__(
        self, emit: Callable[[OutputStream, str, datetime], None], window_seconds: float
    ) -> None:
        self._emit = emit
        self._window = window_seconds
        self._stream: OutputStream | None = None
        self._parts: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._quiet_from = 0.0  # loop time from which a whole line goes out at once

    def write(self, stream: OutputStream, text: str) -> None:
        if not text:
            return
        if self._stream is not None and stream is not self._stream:
            self.flush()
        if self._window <= 0:
            self._write_lines(stream, text)
            return
        loop = asyncio.get_running_loop()
        if (
            not self._parts
            and text.endswith(("\n", "\r"))
            and loop.time() >= self._quiet_from
            and len(text) < _MAX_CHUNK_CHARS
        ):
            self._emit(stream, text, utc_now())
            self._quiet_from = loop.time() + self._window
            return
        self._stream = stream
        self._parts.append(text)
        self._size += len(text)
        if self._size >= _MAX_CHUNK_CHARS:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self.flush)

    def _write_lines(self, stream: OutputStream, text: str) -> None:
        if self._parts:  # the start of this text's first line
            text = "".join(self._parts) + text
            self._parts = []
            self._size = 0
        lines = text.splitlines(keepends=True)
        if not lines[-1].endswith(("\n", "\r")):
            partial = lines.pop()
            self._stream = stream
            self._parts.append(partial)
            self._size = len(partial)
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(0, self.flush)
        at = utc_now()
        for line in lines:
            self._emit(stream, line, at)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._parts and self._stream is not None:
            self._emit(self._stream, "".join(self._parts), utc_now())
            if self._window > 0:
                self._quiet_from = asyncio.get_running_loop().time() + self._window
        self._parts = []
        self._size = 0
        self._stream = None
