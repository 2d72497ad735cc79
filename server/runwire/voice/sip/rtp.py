"""RTP media (RFC 3550) for one call: G.711 audio paced at 20 ms, and DTMF as RFC 4733 events.

An `RtpSession` is bound before the SDP is written (its port goes in the SDP) and connected once
the far end's address and payload types are known; it is a `media.MediaLeg`. One sender task
ticks every 20 ms against the loop clock (tick n is due at start + n * 20 ms, so lateness never
accumulates) and sends whatever is queued: played audio, an event packet, or silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import socket
import struct
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from runwire.voice import codecs, dtmf
from runwire.voice.media import (
    DIGITS,
    FRAME_BYTES,
    FRAME_MS,
    FRAME_SAMPLES,
    SILENT_FRAME,
    AudioFrame,
    DigitHeard,
    DigitMethod,
    Inbound,
)

log = logging.getLogger(__name__)

_EVENT_CODES = "0123456789*#ABCD"
_EVENT_VOLUME = 10  # -10 dBm0, a typical DTMF level
_END_PACKETS = 3  # RFC 4733 2.5.1.4: the end packet is sent three times
_MAX_LATE_S = 0.2  # a loop stalled this long skips ticks instead of sending a burst
_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "PCMU": codecs.ulaw_decode,
    "PCMA": codecs.alaw_decode,
}
_ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "PCMU": codecs.ulaw_encode,
    "PCMA": codecs.alaw_encode,
}
_STATIC = {0: "PCMU", 8: "PCMA"}


class DigitDetector(Protocol):
    """In-band DTMF detection over consecutive PCM (`runwire.voice.dtmf.DtmfDetector`)."""

    def feed(self, pcm: bytes) -> list[str]: ...


@dataclass(slots=True, eq=False)
class _Job:
    """One play() or send_digits() call: its frames are removed if the caller is cancelled."""

    done: asyncio.Future[None]


@dataclass(slots=True)
class _Audio:
    job: _Job | None
    pcm: bytes


@dataclass(slots=True)
class _Event:
    job: _Job
    code: int
    duration: int
    first: bool
    end: bool
    pcm: bytes
    """The digit's tone for this tick, for the recording (the wire carries only the event)."""


_Out = _Audio | _Event


@dataclass(eq=False)
class _Listener:
    """One heard() iterator: its own queue of what arrives after it was made."""

    queue: asyncio.Queue[Inbound | None] = field(default_factory=asyncio.Queue)

    def __aiter__(self) -> _Listener:
        return self

    async def __anext__(self) -> Inbound:
        item = await self.queue.get()
        if item is None:
            self.queue.put_nowait(None)  # stays ended for any later __anext__
            raise StopAsyncIteration
        return item


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession) -> None:
        self.session = session
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            self.session._received(data)
        except Exception:
            # A hostile or broken packet must never take the transport down.
            log.debug("dropped an RTP packet we could not read", exc_info=True)

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class RtpSession:
    """One side of a call's RTP media, as a `media.MediaLeg`."""

    def __init__(self, host: str, detector: DigitDetector | None = None) -> None:
        self.host = host
        self._detector = detector
        self._transport: asyncio.DatagramTransport | None = None
        self._remote: tuple[str, int] | None = None
        self._payload_type = 0
        self._codec = "PCMU"
        self._event_payload_type: int | None = None
        self._ssrc = secrets.randbits(32)
        self._sequence = secrets.randbits(16)
        self._timestamp0 = secrets.randbits(32)
        self._outbox: deque[_Out] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._listeners: weakref.WeakSet[_Listener] = weakref.WeakSet()
        self._ended = False
        self._start: float | None = None
        self._sent = bytearray()
        self._heard = bytearray()
        self._in_buffer = b""
        self._event_timestamp = 0
        self._events_seen: deque[tuple[int, int]] = deque(maxlen=64)
        self._event_open: tuple[tuple[int, int], int] | None = None
        self._marker = True

    @classmethod
    @contextlib.asynccontextmanager
    async def bound(
        cls, host: str = "127.0.0.1", port: int = 0, *, detector: DigitDetector | None = None
    ) -> AsyncIterator[RtpSession]:
        """A session on its own UDP socket; exit stops sending and closes the socket."""
        loop = asyncio.get_running_loop()
        session = cls(host, detector if detector is not None else _default_detector())
        sock = _bind(host, port)
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _Protocol(session), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        session._transport = transport
        try:
            yield session
        finally:
            session.stop()
            if session._sender is not None:
                await asyncio.wait([session._sender])
            transport.close()
            # The socket is closed on a later loop turn; wait so the port is free on exit.
            await asyncio.shield(protocol.closed)

    @property
    def address(self) -> tuple[str, int]:
        assert self._transport is not None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def ended(self) -> bool:
        return self._ended

    def connect(
        self,
        remote_host: str,
        remote_port: int,
        payload_type: int,
        codec: str,
        event_payload_type: int | None,
    ) -> None:
        """Start sending to the far end (and recording) with the negotiated payload types."""
        if codec not in _ENCODERS:
            raise ValueError(f"unsupported codec {codec}")
        self._remote = (remote_host, remote_port)
        self._payload_type, self._codec = payload_type, codec
        self._event_payload_type = event_payload_type
        if self._sender is None and not self._ended:
            self._start = time.monotonic()
            self._sender = asyncio.create_task(self._send_loop(), name="rtp-sender")

    def stop(self) -> None:
        """Stop sending and end every heard() iterator (the call is over); idempotent."""
        if self._ended:
            return
        self._ended = True
        if self._sender is not None:
            self._sender.cancel()
        for item in self._outbox:
            if item.job is not None and not item.job.done.done():
                item.job.done.set_result(None)
        self._outbox.clear()
        for listener in list(self._listeners):
            listener.queue.put_nowait(None)

    # MediaLeg

    async def play(self, pcm: bytes) -> None:
        if self._ended or not pcm:
            return
        job = _Job(asyncio.get_running_loop().create_future())
        padded = pcm + bytes(-len(pcm) % FRAME_BYTES)
        self._outbox.extend(
            _Audio(job, padded[offset : offset + FRAME_BYTES])
            for offset in range(0, len(padded), FRAME_BYTES)
        )
        await self._finish(job)

    async def send_digits(
        self, digits: str, method: DigitMethod, *, tone_ms: int = 100, gap_ms: int = 70
    ) -> None:
        unknown = set(digits.upper()) - DIGITS
        if unknown:
            raise ValueError(f"not DTMF digits: {''.join(sorted(unknown))}")
        if method is DigitMethod.INBAND or self._event_payload_type is None:
            # Without a negotiated telephone-event the only way to send a digit is in the audio.
            await self.play(dtmf.tones(digits.upper(), tone_ms=tone_ms, gap_ms=gap_ms))
            return
        if self._ended or not digits:
            return
        job = _Job(asyncio.get_running_loop().create_future())
        ticks = max(1, math.ceil(tone_ms / FRAME_MS))
        gap = max(1, math.ceil(gap_ms / FRAME_MS))
        for digit in digits.upper():
            code = _EVENT_CODES.index(digit)
            tone = dtmf.tones(digit, tone_ms=ticks * FRAME_MS, gap_ms=0)
            self._outbox.extend(
                _Event(
                    job,
                    code,
                    (tick + 1) * FRAME_SAMPLES,
                    tick == 0,
                    tick == ticks - 1,
                    tone[tick * FRAME_BYTES : (tick + 1) * FRAME_BYTES],
                )
                for tick in range(ticks)
            )
            self._outbox.extend(_Audio(job, SILENT_FRAME) for _ in range(gap))
        await self._finish(job)

    def heard(self) -> AsyncIterator[Inbound]:
        listener = _Listener()
        if self._ended:
            listener.queue.put_nowait(None)
        else:
            self._listeners.add(listener)
        return listener

    def recording(self) -> tuple[bytes, bytes]:
        sent, heard = bytes(self._sent), bytes(self._heard)
        length = max(len(sent), len(heard))
        return sent + bytes(length - len(sent)), heard + bytes(length - len(heard))

    async def _finish(self, job: _Job) -> None:
        try:
            await asyncio.shield(job.done)
        except asyncio.CancelledError:
            # The caller stopped listening to its own prompt (barge-in): unqueue what is left.
            self._outbox = deque(item for item in self._outbox if item.job is not job)
            raise

    # Sending

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        while True:
            self._send_tick(tick)
            tick += 1
            late = loop.time() - (start + tick * FRAME_MS / 1000)
            if late > _MAX_LATE_S:
                skipped = int(late * 1000 // FRAME_MS)
                tick += skipped
                self._sent += SILENT_FRAME * skipped
            await asyncio.sleep(max(0.0, start + tick * FRAME_MS / 1000 - loop.time()))

    def _send_tick(self, tick: int) -> None:
        timestamp = (self._timestamp0 + tick * FRAME_SAMPLES) & 0xFFFFFFFF
        item = self._outbox.popleft() if self._outbox else None
        if isinstance(item, _Event) and self._event_payload_type is not None:
            if item.first:
                self._event_timestamp = timestamp
            payload = struct.pack(
                "!BBH",
                item.code,
                (0x80 if item.end else 0) | _EVENT_VOLUME,
                min(item.duration, 0xFFFF),
            )
            for _ in range(_END_PACKETS if item.end else 1):
                self._send(self._event_payload_type, self._event_timestamp, payload, item.first)
            self._sent += item.pcm
            self._marker = True  # the audio after an event starts a new talkspurt
        else:
            pcm = item.pcm if isinstance(item, _Audio) else SILENT_FRAME
            self._send(self._payload_type, timestamp, _ENCODERS[self._codec](pcm), self._marker)
            self._marker = item is None  # played audio after idle silence is a talkspurt
            self._sent += pcm
        if item is not None and item.job is not None:
            done = item.job.done
            if not any(queued.job is item.job for queued in self._outbox) and not done.done():
                done.set_result(None)

    def _send(self, payload_type: int, timestamp: int, payload: bytes, marker: bool) -> None:
        if self._transport is None or self._remote is None or self._transport.is_closing():
            return
        header = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if marker else 0) | payload_type,
            self._sequence,
            timestamp,
            self._ssrc,
        )
        self._sequence = (self._sequence + 1) & 0xFFFF
        self._transport.sendto(header + payload, self._remote)

    # Receiving

    def _received(self, data: bytes) -> None:
        if self._ended or len(data) < 12 or data[0] >> 6 != 2:
            return
        first, second, _, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10:  # header extension: 16-bit profile, 16-bit length in words
            (words,) = struct.unpack("!H", data[offset + 2 : offset + 4])
            offset += 4 + 4 * words
        payload = data[offset:]
        if first & 0x20 and payload:
            payload = payload[: -payload[-1]]
        payload_type = second & 0x7F
        now = time.monotonic()
        if payload_type == self._event_payload_type:
            self._received_event(payload, ssrc, timestamp, now)
        elif payload_type in _STATIC:
            self._received_audio(_DECODERS[_STATIC[payload_type]](payload), now)

    def _received_event(self, payload: bytes, ssrc: int, timestamp: int, now: float) -> None:
        if len(payload) < 4 or payload[0] >= len(_EVENT_CODES):
            return
        # An event is reported once, at its end; its end packet comes three times.
        key = (ssrc, timestamp)
        if key in self._events_seen:
            return
        if self._event_open is not None and self._event_open[0] != key:
            # A new event started but the last never ended: its end packets were all lost.
            self._report_event(*self._event_open, now)
        if payload[1] & 0x80:
            self._report_event(key, payload[0], now)
        else:
            self._event_open = (key, payload[0])

    def _report_event(self, key: tuple[int, int], code: int, now: float) -> None:
        self._event_open = None
        self._events_seen.append(key)
        self._publish(DigitHeard(_EVENT_CODES[code], DigitMethod.RFC4733, now))

    def _received_audio(self, pcm: bytes, now: float) -> None:
        self._in_buffer += pcm
        while len(self._in_buffer) >= FRAME_BYTES:
            frame, self._in_buffer = self._in_buffer[:FRAME_BYTES], self._in_buffer[FRAME_BYTES:]
            if self._start is not None:
                # Place the frame where it arrived on the call's clock; late ones append.
                due = int((now - self._start) * 1000 // FRAME_MS) * FRAME_BYTES
                if due > len(self._heard) + FRAME_BYTES:
                    self._heard += bytes(due - FRAME_BYTES - len(self._heard))
                self._heard += frame
            self._publish(AudioFrame(frame, now))
            if self._detector is not None:
                for digit in self._detector.feed(frame):
                    self._publish(DigitHeard(digit, DigitMethod.INBAND, now))

    def _publish(self, item: Inbound) -> None:
        for listener in self._listeners:
            listener.queue.put_nowait(item)


def _bind(host: str, port: int) -> socket.socket:
    """A UDP socket on `port`, or (port 0) on an even free port: RFC 3550 keeps RTP on even
    ports (RTCP on the odd one above), and some PBXes expect it."""
    for _ in range(64):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        if port or sock.getsockname()[1] % 2 == 0:
            return sock
        sock.close()
    raise OSError(f"no even UDP port free on {host}")


def _default_detector() -> DigitDetector:
    return dtmf.DtmfDetector()
