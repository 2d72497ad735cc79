"""Two `MediaLeg`s joined in memory: a call's media without a network, for the `simulated` driver.

One clock paces both directions at 20 ms a frame, like two RTP sessions would: each tick each leg
sends its next frame of what it is playing (silence when idle) and the other leg hears it. Digits
go either as RFC 4733-style events, delivered when the key is released, or in-band as tones in
the audio, which the receiving leg finds with the same `DtmfDetector` an RTP leg uses.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from runwire.voice.codecs import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from runwire.voice.dtmf import DtmfDetector, tones
from runwire.voice.media import (
    DIGITS,
    FRAME_BYTES,
    FRAME_MS,
    SILENT_FRAME,
    AudioFrame,
    DigitHeard,
    DigitMethod,
    Inbound,
)


@dataclass(eq=False, slots=True)
class _Playing:
    """PCM queued by one `play`, sent a frame a tick; `done` resolves after its last frame."""

    frames: deque[bytes]
    done: asyncio.Future[None]


@dataclass(eq=False, slots=True, weakref_slot=True)
class _Hearing:
    """One `heard()` iterator's queue; None marks the end of the media."""

    queue: asyncio.Queue[Inbound | None] = field(default_factory=asyncio.Queue)

    def __aiter__(self) -> _Hearing:
        return self

    async def __anext__(self) -> Inbound:
        item = await self.queue.get()
        if item is None:
            self.queue.put_nowait(None)  # every later call ends too
            raise StopAsyncIteration
        return item


class PipeLeg:
    """One side of a `MediaPipe`; a real `MediaLeg`."""

    def __init__(self, pipe: MediaPipe) -> None:
        self._pipe = pipe
        self._playing: deque[_Playing] = deque()
        self._hearing: weakref.WeakSet[_Hearing] = weakref.WeakSet()
        self._detector = DtmfDetector()
        self._sent: list[bytes] = []
        self._heard: list[bytes] = []
        self.other: PipeLeg = self

    async def play(self, pcm: bytes) -> None:
        if self._pipe.ended or not pcm:
            return
        padded = pcm + bytes(-len(pcm) % FRAME_BYTES)
        item = _Playing(
            deque(padded[at : at + FRAME_BYTES] for at in range(0, len(padded), FRAME_BYTES)),
            asyncio.get_running_loop().create_future(),
        )
        self._playing.append(item)
        try:
            await item.done
        finally:
            # A cancelled play stops sending the rest of its audio.
            if item in self._playing:
                self._playing.remove(item)

    async def send_digits(
        self, digits: str, method: DigitMethod, *, tone_ms: int = 100, gap_ms: int = 70
    ) -> None:
        unknown = sorted(set(digits) - DIGITS)
        if unknown:
            raise ValueError(f"not DTMF digits: {''.join(unknown)!r}")
        if method is DigitMethod.INBAND:
            await self.play(tones(digits, tone_ms=tone_ms, gap_ms=gap_ms))
            return
        for digit in digits:
            # RFC 4733: the event lasts tone_ms, and the far end acts on its end.
            await self._pipe.ticks(max(1, tone_ms // FRAME_MS))
            if self._pipe.ended:
                return
            self.other._arrive(DigitHeard(digit, DigitMethod.RFC4733, time.monotonic()))
            await self._pipe.ticks(max(1, gap_ms // FRAME_MS))

    def heard(self) -> AsyncIterator[Inbound]:
        hearing = _Hearing()
        if self._pipe.ended:
            hearing.queue.put_nowait(None)
        else:
            self._hearing.add(hearing)
        return hearing

    def recording(self) -> tuple[bytes, bytes]:
        return b"".join(self._sent), b"".join(self._heard)

    def _next_frame(self) -> bytes:
        frame = SILENT_FRAME
        while self._playing:
            item = self._playing[0]
            if item.done.done():  # cancelled while queued
                self._playing.popleft()
                continue
            frame = item.frames.popleft()
            if not item.frames:
                self._playing.popleft()
                item.done.set_result(None)
            break
        self._sent.append(frame)
        return frame

    def _hear_frame(self, pcm: bytes, at: float) -> None:
        self._heard.append(pcm)
        self._arrive(AudioFrame(pcm, at))
        for digit in self._detector.feed(pcm):
            self._arrive(DigitHeard(digit, DigitMethod.INBAND, at))

    def _arrive(self, item: Inbound | None) -> None:
        for hearing in list(self._hearing):
            hearing.queue.put_nowait(item)

    def _end(self) -> None:
        for item in self._playing:
            if not item.done.done():
                item.done.set_result(None)
        self._playing.clear()
        self._arrive(None)
        self._hearing = weakref.WeakSet()


_CODECS: dict[str, Callable[[bytes], bytes]] = {
    "PCMU": lambda pcm: ulaw_decode(ulaw_encode(pcm)),
    "PCMA": lambda pcm: alaw_decode(alaw_encode(pcm)),
    "L16": lambda pcm: pcm,
}


class MediaPipe:
    """Two legs, `near` (the caller's) and `far` (what answered), joined by one 20 ms clock.

    Each frame goes through `codec` (G.711 µ-law by default) on its way, so what a leg hears
    has lost what it would have lost on a phone line; `L16` passes it untouched.
    """

    def __init__(self, codec: str = "PCMU") -> None:
        if codec not in _CODECS:
            raise ValueError(f"unknown codec {codec!r}; expected one of: {', '.join(_CODECS)}")
        self._carry = _CODECS[codec]
        self.near = PipeLeg(self)
        self.far = PipeLeg(self)
        self.near.other, self.far.other = self.far, self.near
        self._tick = 0
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._ended = asyncio.Event()

    @classmethod
    @asynccontextmanager
    async def open(cls, codec: str = "PCMU") -> AsyncIterator[MediaPipe]:
        """Run the clock until exit (or `end()`); exit ends the media on both legs."""
        pipe = cls(codec)
        clock = asyncio.create_task(pipe._run(), name="media-pipe-clock")
        try:
            yield pipe
        finally:
            pipe.end()
            clock.cancel()
            try:
                await clock
            except asyncio.CancelledError:
                # Ours, unless the task running this exit is itself being cancelled.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def end(self) -> None:
        """End the media (a hang-up): every `heard()` iterator ends, pending plays return."""
        if self._ended.is_set():
            return
        self._ended.set()
        self.near._end()
        self.far._end()
        for _, waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)
        self._waiting.clear()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    async def ticks(self, count: int) -> None:
        """Wait for `count` frames of the clock (returns at once when the media has ended)."""
        if self.ended:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append((self._tick + count, waiter))
        await waiter

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not self.ended:
            # Absolute deadlines: a late tick is caught up, so the pace never drifts.
            await asyncio.sleep(max(0.0, start + (self._tick + 1) * FRAME_MS / 1000 - loop.time()))
            self._tick += 1
            near, far = self.near._next_frame(), self.far._next_frame()
            at = time.monotonic()
            self.far._hear_frame(self._carry(near), at)
            self.near._hear_frame(self._carry(far), at)
            due = [waiter for tick, waiter in self._waiting if tick <= self._tick]
            self._waiting = [(tick, waiter) for tick, waiter in self._waiting if tick > self._tick]
            for waiter in due:
                if not waiter.done():
                    waiter.set_result(None)
