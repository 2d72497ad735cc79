"""Hearing a prompt from real frames: speech start and end, noise, digits and timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable

import numpy as np
import pytest

from runwire.voice.asr import Recognizer
from runwire.voice.codecs import ulaw_decode, ulaw_encode
from runwire.voice.listening import hear
from runwire.voice.media import (
    FRAME_BYTES,
    SAMPLE_RATE,
    AudioFrame,
    DigitHeard,
    DigitMethod,
    Inbound,
)
from runwire.voice.tts import Speaker

FRAME = 0.02
PROMPT = "Welcome to Runwire bank. For balances press 1. For cards press 2."


@pytest.fixture(scope="module")
def prompt() -> bytes:
    return ulaw_decode(ulaw_encode(Speaker().speak(PROMPT)))


def silence(seconds: float) -> bytes:
    return bytes(int(SAMPLE_RATE * seconds) * 2)


def noise(seconds: float, rms: float = 150.0, seed: int = 5) -> bytes:
    samples = np.random.default_rng(seed).normal(0, rms, int(SAMPLE_RATE * seconds))
    return samples.astype("<i2").tobytes()


def frames(pcm: bytes, start: float) -> list[AudioFrame]:
    pcm += bytes(-len(pcm) % FRAME_BYTES)
    return [
        AudioFrame(pcm[i : i + FRAME_BYTES], start + (i // FRAME_BYTES + 1) * FRAME)
        for i in range(0, len(pcm), FRAME_BYTES)
    ]


async def stream(items: Iterable[Inbound], then_wait: bool = False) -> AsyncIterator[Inbound]:
    for item in items:
        yield item
    if then_wait:  # a leg whose far end went quiet without ending the media
        await asyncio.Event().wait()


def edges(pcm: bytes, start: float) -> tuple[float, float]:
    """The `at` of the first and last frame of `pcm` that is not near silence."""
    loud = [f.at for f in frames(pcm, start) if np.abs(np.frombuffer(f.pcm, "<i2")).max() > 300]
    return loud[0], loud[-1]


async def test_speech_after_silence_starts_and_ends_where_it_is(prompt: bytes) -> None:
    t0 = time.monotonic()
    audio = silence(0.5) + prompt + silence(2.0)
    first, last = edges(audio, t0)
    heard = await hear(stream(frames(audio, t0)), start_timeout=5)
    assert heard.speech_started is not None
    assert heard.speech_ended is not None
    assert abs(heard.speech_started - first) <= 0.06
    assert abs(heard.speech_ended - last) <= 0.2
    assert heard.digits == ""
    # The pauses between the prompt's sentences did not end it; 700 ms of silence did.
    seconds = len(heard.pcm) / 2 / SAMPLE_RATE
    assert len(prompt) / 2 / SAMPLE_RATE < seconds < len(prompt) / 2 / SAMPLE_RATE + 1.0


async def test_steady_line_noise_is_not_speech(prompt: bytes) -> None:
    t0 = time.monotonic()
    quiet = noise(1.0)
    audio = (
        quiet
        + (np.frombuffer(prompt, "<i2") + np.frombuffer(noise(len(prompt) / 16000, seed=6), "<i2"))
        .astype("<i2")
        .tobytes()
        + noise(1.5, seed=7)
    )
    heard = await hear(stream(frames(audio, t0)), start_timeout=5)
    assert heard.speech_started is not None
    assert heard.speech_started >= t0 + 1.0
    only_noise = await hear(stream(frames(noise(3.0, rms=400), t0)), start_timeout=5)
    assert only_noise.speech_started is None
    assert only_noise.pcm == b""


async def test_max_seconds_cuts_a_long_speech(prompt: bytes) -> None:
    t0 = time.monotonic()
    heard = await hear(stream(frames(prompt, t0)), start_timeout=5, max_seconds=1.0)
    assert heard.speech_started is not None
    assert heard.speech_ended is not None
    assert heard.speech_ended - heard.speech_started <= 1.0


async def test_digits_end_the_hearing_when_enough_have_arrived() -> None:
    t0 = time.monotonic()
    items: list[Inbound] = [
        *frames(silence(0.4), t0),
        DigitHeard("1", DigitMethod.RFC4733, t0 + 0.4),
        *frames(silence(0.2), t0 + 0.4),
        DigitHeard("2", DigitMethod.INBAND, t0 + 0.6),
        *frames(silence(5.0), t0 + 0.6),
    ]
    two = await hear(stream(items, then_wait=True), start_timeout=5, until_digits=2)
    assert (two.digits, two.speech_started) == ("12", None)
    # Without a count, digits count as activity: the hearing ends after the silence after them.
    any_count = await hear(stream(items, then_wait=True), start_timeout=5, end_silence_ms=500)
    assert any_count.digits == "12"


async def test_nothing_heard_ends_at_the_start_timeout() -> None:
    started = time.monotonic()
    heard = await hear(stream([], then_wait=True), start_timeout=0.3)
    assert heard == type(heard)(b"", None, None, "")
    assert 0.25 < time.monotonic() - started < 2.0
    t0 = time.monotonic()
    ended = await hear(stream(frames(silence(1.0), t0)), start_timeout=5)
    assert ended.speech_started is None


async def test_what_is_heard_is_recognised(prompt: bytes) -> None:
    t0 = time.monotonic()
    heard = await hear(stream(frames(silence(0.3) + prompt + silence(1.0), t0)), start_timeout=5)
    recognition = await asyncio.to_thread(
        Recognizer(max_workers=1).recognize, heard.pcm, ["for balances press 1", "agent"]
    )
    # What was said is found. ("agent" is sometimes found too, in "Runwire bank": a false match
    # of a short phrase, a known weakness of the recognizer, measured by bench/voice_asr.py.)
    assert "for balances press one" in recognition.phrases
