"""G.711 (µ-law for PCMU, A-law for PCMA) and WAV files, on the shared 8 kHz 16-bit PCM.

The tables are built once from the ITU-T G.711 reference algorithm (as in Sun's g711.c), so a
conversion is one numpy lookup per buffer.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from runwire.voice.media import SAMPLE_RATE

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159
_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: Sequence[int]) -> int:
    for index, end in enumerate(ends):
        if value <= end:
            return index
    return len(ends)


def _ulaw_of(sample: int) -> int:
    value = sample >> 2
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = _segment(value, _ULAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0xF)) ^ mask


def _linear_of_ulaw(code: int) -> int:
    code = ~code & 0xFF
    value = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return _ULAW_BIAS - value if code & 0x80 else value - _ULAW_BIAS


def _alaw_of(sample: int) -> int:
    value = sample >> 3
    mask = 0xD5
    if value < 0:
        value, mask = -value - 1, 0x55
    segment = _segment(value, _ALAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    shift = 1 if segment < 2 else segment
    return ((segment << 4) | ((value >> shift) & 0xF)) ^ mask


def _linear_of_alaw(code: int) -> int:
    code ^= 0x55
    value = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        value += 8
    elif segment == 1:
        value += 0x108
    else:
        value = (value + 0x108) << (segment - 1)
    return value if code & 0x80 else -value


def _encoder(of: object) -> npt.NDArray[np.uint8]:
    assert callable(of)
    return np.array([of(sample) for sample in range(-32768, 32768)], dtype=np.uint8)


def _decoder(of: object) -> npt.NDArray[np.int16]:
    assert callable(of)
    return np.array([of(code) for code in range(256)], dtype=np.int16)


# Indexed by sample + 32768, and by code.
_ULAW_ENCODE = _encoder(_ulaw_of)
_ULAW_DECODE = _decoder(_linear_of_ulaw)
_ALAW_ENCODE = _encoder(_alaw_of)
_ALAW_DECODE = _decoder(_linear_of_alaw)


def _samples(pcm: bytes) -> npt.NDArray[np.int32]:
    return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.int32) + 32768


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit PCM to µ-law (PCMU payload), one byte a sample."""
    return _ULAW_ENCODE[_samples(pcm)].tobytes()


def ulaw_decode(payload: bytes) -> bytes:
    """µ-law (PCMU payload) to 16-bit PCM."""
    return _ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)].astype("<i2").tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit PCM to A-law (PCMA payload), one byte a sample."""
    return _ALAW_ENCODE[_samples(pcm)].tobytes()


def alaw_decode(payload: bytes) -> bytes:
    """A-law (PCMA payload) to 16-bit PCM."""
    return _ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)].astype("<i2").tobytes()


def wav_bytes(channels: Sequence[bytes], sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 16-bit WAV file of one or more PCM channels; shorter channels end in silence."""
    if not channels:
        raise ValueError("a WAV file needs at least one channel")
    length = max(len(channel) // 2 for channel in channels)
    frames = np.zeros((length, len(channels)), dtype="<i2")
    for index, channel in enumerate(channels):
        samples = np.frombuffer(channel[: len(channel) // 2 * 2], dtype="<i2")
        frames[: len(samples), index] = samples
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(len(channels))
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(frames.tobytes())
    return buffer.getvalue()
