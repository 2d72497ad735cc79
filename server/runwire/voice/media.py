"""The audio every part of a call shares, and one side of a call's media.

Audio inside Runwire is 8 kHz, 16-bit signed little-endian, mono linear PCM (what G.711 carries
on a phone call), moved in 20 ms frames of 160 samples. Codecs, TTS, recognition, DTMF and the
recordings all speak it; only the RTP session converts to and from PCMU/PCMA.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 160
FRAME_BYTES = FRAME_SAMPLES * 2  # 320
SILENT_FRAME = bytes(FRAME_BYTES)

DIGITS = frozenset("0123456789*#ABCD")
"""The DTMF digits a call can send or hear (RFC 4733 events 0-15)."""


class DigitMethod(StrEnum):
    """How a digit travels: as RFC 4733 telephone-events, or as tones in the audio."""

    RFC4733 = "rfc4733"
    INBAND = "inband"


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One 20 ms frame heard from the far end; `at` is `time.monotonic()` when it arrived."""

    pcm: bytes
    at: float


@dataclass(frozen=True, slots=True)
class DigitHeard:
    """A DTMF digit heard from the far end (an RFC 4733 event's end, or a detected tone)."""

    digit: str
    method: DigitMethod
    at: float


Inbound = AudioFrame | DigitHeard


class MediaLeg(Protocol):
    """One side of an answered call's media: what it sends, and what it hears.

    Sending is paced in real time (one frame per 20 ms); the leg sends silence (or comfort
    noise) whenever nothing is being played, so the far end's clock keeps running. Both directions
    are recorded for the call's WAV artifact.
    """

    async def play(self, pcm: bytes) -> None:
        """Send `pcm` (padded to whole frames); returns when its last frame has been sent."""
        ...

    async def send_digits(
        self, digits: str, method: DigitMethod, *, tone_ms: int = 100, gap_ms: int = 70
    ) -> None:
        """Send DTMF digits one after another; returns when the last has ended."""
        ...

    def heard(self) -> AsyncIterator[Inbound]:
        """What arrives from the far end, in order, from now on; ends when the media ends.

        Each call returns a new iterator that sees everything that arrives after it was made.
        """
        ...

    def recording(self) -> tuple[bytes, bytes]:
        """Everything sent and everything heard so far, each as PCM aligned to the call's start
        (gaps filled with silence), for a two-channel WAV."""
        ...
