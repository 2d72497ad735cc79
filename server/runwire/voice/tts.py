"""Text to speech: espeak-ng (the library the `espeakng-loader` wheel bundles) through ctypes.

espeak-ng keeps one global synthesizer per process, with one global callback, so every
synthesis holds `_LOCK` from setting the voice to the last sample. It speaks at 22050 Hz; the
result is resampled to the shared 8 kHz with a windowed-sinc low-pass below 4 kHz (aliasing
would otherwise fold sibilants back into the telephone band).
"""

from __future__ import annotations

import ctypes
import functools
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from runwire.voice.calls import EngineMissing
from runwire.voice.media import SAMPLE_RATE

_INSTALL = (
    "text to speech needs libespeak-ng: `pip install espeakng-loader` "
    "(or on Debian `apt-get install espeak-ng`)"
)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1  # espeak_PARAMETER espeakRATE, words per minute
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_LOCK = threading.Lock()


class _Engine:
    """The process's one espeak-ng, initialised once; use only while holding `_LOCK`."""

    def __init__(self) -> None:
        library, data_path = _load()
        self._lib = library
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        self._lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        path = data_path.encode() if data_path else None
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, path, 0)
        if rate <= 0:
            raise EngineMissing(f"espeak-ng did not start (data at {data_path}); {_INSTALL}")
        self.rate = rate
        self._chunks: list[bytes] = []
        # Kept on self: ctypes must hold the callback for as long as espeak may call it.
        self._callback = _SynthCallback(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, count: int, _events: Any) -> int:
        if wav and count > 0:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        return 0  # continue synthesis

    def synthesize(self, text: str, voice: str, words_per_minute: int) -> bytes:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self._lib.espeak_SetParameter(_ESPEAK_RATE, words_per_minute, 0)
        self._chunks = []
        data = text.encode() + b"\0"
        status = self._lib.espeak_Synth(
            data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if status != _EE_OK:
            raise RuntimeError(f"espeak-ng could not speak (error {status})")
        pcm = b"".join(self._chunks)
        self._chunks = []
        return pcm


def _load() -> tuple[ctypes.CDLL, str | None]:
    try:
        import espeakng_loader

        return ctypes.CDLL(espeakng_loader.get_library_path()), espeakng_loader.get_data_path()
    except (ImportError, OSError, RuntimeError):
        pass
    # Debian's espeak-ng package: with no path the system library finds its own data.
    for name in ("libespeak-ng.so.1", "libespeak-ng.so"):
        try:
            return ctypes.CDLL(name), None
        except OSError:
            continue
    raise EngineMissing(_INSTALL)


_engine: _Engine | None = None


def _the_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


class Speaker:
    """Speaks text as 8 kHz PCM; blocking and thread-safe (run it with `asyncio.to_thread`)."""

    def __init__(self, voice: str = "en-us", words_per_minute: int = 160) -> None:
        self.voice = voice
        self.words_per_minute = words_per_minute
        with _LOCK:
            _the_engine()  # fail now, with the install hint, not on the first prompt

    def speak(self, text: str) -> bytes:
        """`text` spoken as 8 kHz 16-bit mono PCM (empty for empty text)."""
        if not text.strip():
            return b""
        with _LOCK:
            engine = _the_engine()
            pcm = engine.synthesize(text, self.voice, self.words_per_minute)
            rate = engine.rate
        return resample(pcm, rate, SAMPLE_RATE)


@functools.cache
def default_speaker() -> Speaker:
    """The shared en-US speaker at the default rate."""
    return Speaker()


@functools.cache
def _filter_bank(up: int, down: int, half_taps: int) -> npt.NDArray[np.float64]:
    """Windowed-sinc taps for each of the `up` fractional phases, cut below the lower Nyquist."""
    # Cut-off 0.92 of the lower rate's Nyquist: the Kaiser window's transition (~1 kHz at the
    # input rate) then ends near 4.4 kHz, and what aliases lands above 3.6 kHz, out of the band
    # a phone carries.
    cutoff = 0.92 * min(1.0, up / down)  # relative to the input's Nyquist
    phases = np.arange(up) * down % up / up  # fractional input offset for output n % up
    offsets = np.arange(-half_taps + 1, half_taps + 1)
    distance = offsets[None, :] - phases[:, None]
    window = np.kaiser(2 * half_taps + 1, 8.6)
    # Sample the continuous Kaiser window at the fractional distances.
    centre = np.interp(distance, np.arange(-half_taps, half_taps + 1), window)
    taps: npt.NDArray[np.float64] = cutoff * np.sinc(cutoff * distance) * centre
    return taps


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """16-bit PCM from one rate to another, band-limited (polyphase windowed sinc)."""
    if from_rate == to_rate or not pcm:
        return pcm
    divisor = np.gcd(from_rate, to_rate)
    up, down = to_rate // divisor, from_rate // divisor
    half_taps = 32 if up >= down else int(np.ceil(32 * down / up))
    bank = _filter_bank(up, down, half_taps)
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    count = len(samples) * up // down
    padded = np.concatenate([np.zeros(half_taps), samples, np.zeros(half_taps + 1)])
    offsets = np.arange(-half_taps + 1, half_taps + 1)[None, :] + half_taps
    out = np.empty(count)
    # In blocks, so a long prompt's gathered windows stay a few MB.
    for start in range(0, count, 4096):
        n = np.arange(start, min(start + 4096, count))
        index = (n * down // up)[:, None] + offsets
        out[start : start + len(n)] = np.einsum("ij,ij->i", padded[index], bank[n % up])
    return np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes()
