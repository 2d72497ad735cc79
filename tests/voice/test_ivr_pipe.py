"""MediaPipe: two in-memory legs at 20 ms a frame, carrying audio, RFC 4733 digits and tones."""

from __future__ import annotations

import asyncio
import time

from runwire.voice.codecs import alaw_decode, alaw_encode
from runwire.voice.media import FRAME_BYTES, AudioFrame, DigitHeard, DigitMethod, Inbound
from runwire.voice.pipe import MediaPipe


async def collect(items: list[Inbound], stream: object) -> None:
    async for item in stream:  # type: ignore[attr-defined]
        items.append(item)


async def test_audio_is_paced_in_real_time_and_recorded_on_both_sides() -> None:
    async with MediaPipe.open("L16") as pipe:
        heard: list[Inbound] = []
        listener = asyncio.create_task(collect(heard, pipe.far.heard()))
        sound = bytes(range(256)) * (FRAME_BYTES * 10 // 256)  # 10 frames
        started = time.monotonic()
        await pipe.near.play(sound)
        elapsed = time.monotonic() - started
        assert 0.17 <= elapsed < 0.5
        pipe.end()
        await asyncio.wait_for(listener, 1)
    frames = [item.pcm for item in heard if isinstance(item, AudioFrame)]
    assert sound in b"".join(frames)
    sent, _ = pipe.near.recording()
    _, received = pipe.far.recording()
    assert sent == received
    assert len(sent) % FRAME_BYTES == 0
    assert sound in sent


async def test_digits_arrive_as_events_and_as_detected_tones() -> None:
    async with MediaPipe.open() as pipe:
        heard: list[Inbound] = []
        listener = asyncio.create_task(collect(heard, pipe.far.heard()))
        await pipe.near.send_digits("12", DigitMethod.RFC4733, tone_ms=40, gap_ms=40)
        await pipe.near.send_digits("#9", DigitMethod.INBAND, tone_ms=80, gap_ms=60)
        await pipe.ticks(3)  # the detector confirms a tone a few windows in
    await asyncio.wait_for(listener, 1)
    digits = [(item.digit, item.method) for item in heard if isinstance(item, DigitHeard)]
    assert digits == [
        ("1", DigitMethod.RFC4733),
        ("2", DigitMethod.RFC4733),
        ("#", DigitMethod.INBAND),
        ("9", DigitMethod.INBAND),
    ]


async def test_ending_the_media_ends_every_iterator_and_pending_play() -> None:
    async with MediaPipe.open() as pipe:
        heard = pipe.near.heard()
        playing = asyncio.create_task(pipe.far.play(bytes(FRAME_BYTES * 500)))  # 10 s
        await pipe.ticks(2)
        pipe.end()
        await asyncio.wait_for(playing, 1)
        items = [item async for item in heard]
        assert items
        assert [item async for item in pipe.near.heard()] == []
        await pipe.near.play(bytes(FRAME_BYTES))  # returns at once on ended media


async def test_a_cancelled_play_stops_sending() -> None:
    async with MediaPipe.open() as pipe:
        loud = b"\x00\x40" * (FRAME_BYTES // 2) * 100
        playing = asyncio.create_task(pipe.near.play(loud))
        await pipe.ticks(5)
        playing.cancel()
        await asyncio.wait((playing,))
        await pipe.ticks(5)
        sent, _ = pipe.near.recording()
    frames = [sent[at : at + FRAME_BYTES] for at in range(0, len(sent), FRAME_BYTES)]
    assert frames[-1] == bytes(FRAME_BYTES)
    assert 3 <= sum(frame != bytes(FRAME_BYTES) for frame in frames) <= 8


async def test_audio_goes_through_g711_on_its_way() -> None:
    tone = (b"\x34\x12" * (FRAME_BYTES // 2)) * 3
    async with MediaPipe.open("PCMA") as pipe:
        await pipe.near.play(tone)
        await pipe.ticks(1)
    _, heard = pipe.far.recording()
    assert alaw_decode(alaw_encode(tone)) in heard
    assert tone not in heard
