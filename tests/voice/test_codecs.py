"""G.711 against the standard's known code points, and WAV files read back by the stdlib."""

from __future__ import annotations

import io
import math
import struct
import wave

import pytest

from runwire.voice.codecs import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode, wav_bytes


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def test_ulaw_known_code_points() -> None:
    # Silence is 0xFF, full scale positive 0x80 and negative 0x00 (ITU-T G.711 table 2).
    assert ulaw_encode(pcm(0, 32767, -32768)) == bytes([0xFF, 0x80, 0x00])
    assert ulaw_decode(bytes([0xFF, 0x7F])) == pcm(0, 0)
    assert ulaw_decode(bytes([0x80, 0x00])) == pcm(32124, -32124)


def test_alaw_known_code_points() -> None:
    # Smallest positive is 0xD5, smallest negative 0x55; full scale 0xAA and 0x2A.
    assert alaw_encode(pcm(0, -1, 32767, -32768)) == bytes([0xD5, 0x55, 0xAA, 0x2A])
    assert alaw_decode(bytes([0xD5, 0x55])) == pcm(8, -8)
    assert alaw_decode(bytes([0xAA, 0x2A])) == pcm(32256, -32256)


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_a_tone_survives_a_round_trip_within_the_companding_error(encode, decode) -> None:  # type: ignore[no-untyped-def]
    tone = [int(12000 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(800)]
    back = struct.unpack("<800h", decode(encode(pcm(*tone))))
    # G.711 keeps about 12 bits: each sample within 1/16 of its magnitude (plus the smallest step).
    assert all(abs(b - t) <= abs(t) / 16 + 16 for b, t in zip(back, tone, strict=True))
    assert len(encode(pcm(*tone))) == 800


def test_wav_holds_both_directions_and_pads_the_shorter() -> None:
    data = wav_bytes([pcm(1, 2, 3), pcm(-1)])
    with wave.open(io.BytesIO(data)) as read:
        assert (read.getnchannels(), read.getsampwidth(), read.getframerate()) == (2, 2, 8000)
        assert read.readframes(3) == pcm(1, -1, 2, 0, 3, 0)
