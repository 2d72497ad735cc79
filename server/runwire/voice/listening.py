"""Hearing one prompt or answer: where speech starts and ends, by frame energy, and the digits.

A frame is voiced when its level is `_MARGIN_DB` over the noise floor (and over an absolute
minimum). The floor follows quiet frames quickly and voiced ones slowly, so steady line noise
is absorbed within a second or two. Speech starts after `_ONSET_FRAMES` voiced frames in a row
and ends after `end_silence_ms` without a voiced frame (or a digit).

Times come from the frames' `at`; a wall-clock deadline covers frames that stop arriving. On a
start timeout the pending read of `heard` is cancelled, which ends an async generator: take a
new `MediaLeg.heard()` iterator for each hearing.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from runwire.voice.media import FRAME_MS, AudioFrame, DigitHeard, Inbound

_MARGIN_DB = 10.0
_MIN_SPEECH_DBFS = -50.0
_INITIAL_FLOOR_CAP_DBFS = -45.0  # the first frame may already be speech: never start above this
_ONSET_FRAMES = 3  # 60 ms
_PRE_ROLL_FRAMES = 10  # 200 ms kept before the onset, so recognition hears the first phone
_FLOOR_QUIET = 0.2  # per frame, towards a quiet frame's level (~100 ms)
_FLOOR_VOICED = 0.01  # per frame, towards a voiced frame's level (~2 s)


@dataclass(frozen=True, slots=True)
class Utterance:
    pcm: bytes
    """From just before speech started to when the hearing ended; empty if there was no speech."""
    speech_started: float | None
    speech_ended: float | None
    digits: str


def level_dbfs(pcm: bytes) -> float:
    """RMS level relative to a full-scale square wave; -100 for digital silence."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    if not samples.size:
        return -100.0
    rms = math.sqrt(float(np.mean(samples * samples)))
    return max(-100.0, 20 * math.log10(rms / 32768)) if rms > 0 else -100.0


class _Voicing:
    """Voiced or not, frame by frame, against an adaptive noise floor."""

    def __init__(self) -> None:
        self.floor: float | None = None

    def voiced(self, pcm: bytes) -> bool:
        level = level_dbfs(pcm)
        if self.floor is None:
            self.floor = min(level, _INITIAL_FLOOR_CAP_DBFS)
        voiced = level > max(self.floor + _MARGIN_DB, _MIN_SPEECH_DBFS)
        rate = _FLOOR_VOICED if voiced else _FLOOR_QUIET
        self.floor = level if level < self.floor else self.floor + rate * (level - self.floor)
        return voiced


async def hear(
    heard: AsyncIterator[Inbound],
    *,
    start_timeout: float,
    end_silence_ms: int = 700,
    max_seconds: float = 30.0,
    until_digits: int = 0,
) -> Utterance:
    """Waits up to `start_timeout` s for speech or a digit, then hears until `end_silence_ms` of
    silence, `max_seconds`, `until_digits` digits (when > 0) or the end of `heard`."""
    loop = asyncio.get_running_loop()
    voicing = _Voicing()
    pre_roll: deque[bytes] = deque(maxlen=_PRE_ROLL_FRAMES)
    onset: list[AudioFrame] = []
    kept: list[bytes] = []
    digits: list[str] = []
    speech_started: float | None = None
    speech_ended: float | None = None
    began: float | None = None  # frame time of the first speech or digit
    last_activity = 0.0
    deadline = loop.time() + start_timeout
    end_silence = end_silence_ms / 1000

    while True:
        try:
            async with asyncio.timeout_at(deadline):
                item = await anext(heard)
        except (TimeoutError, StopAsyncIteration):
            break
        if isinstance(item, DigitHeard):
            digits.append(item.digit)
            if began is None:
                began = item.at
                deadline = loop.time() + max_seconds
            last_activity = max(last_activity, item.at)
            if until_digits and len(digits) >= until_digits:
                break
            continue
        voiced = voicing.voiced(item.pcm)
        if speech_started is None:
            onset = [*onset, item] if voiced else []
            if len(onset) < _ONSET_FRAMES:
                pre_roll.append(item.pcm)
                if began is not None and (
                    item.at - last_activity >= end_silence or item.at - began >= max_seconds
                ):
                    break  # digits only, and they have stopped
                continue
            speech_started = onset[0].at
            speech_ended = item.at
            if began is None:
                began = speech_started
                deadline = loop.time() + max_seconds + FRAME_MS / 1000
            kept = [*pre_roll, item.pcm]
            last_activity = max(last_activity, item.at)
            continue
        kept.append(item.pcm)
        if voiced:
            speech_ended = item.at
            last_activity = max(last_activity, item.at)
        if item.at - last_activity >= end_silence or item.at - (began or 0.0) >= max_seconds:
            break
    return Utterance(b"".join(kept), speech_started, speech_ended, "".join(digits))
