"""DTMF: the tones for a digit string, and a detector for digits sent in-band.

The detector looks at 205-sample windows (25.6 ms, the classic Goertzel block at 8 kHz: row
tones fall ~2 bins apart) every 40 samples (5 ms). A window names a digit when one row and one
column tone are loud enough, within the twist limits, well above the other tones of their group,
and hold most of the window's energy, so speech and noise (energy spread over many frequencies)
do not fire. A digit is confirmed after `_CONFIRM` windows in a row (a tone of 40 ms always
gives that many), and reported once; the same digit again needs a gap first.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from runwire.voice.media import DIGITS, SAMPLE_RATE

ROWS = (697.0, 770.0, 852.0, 941.0)
COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD = ("123A", "456B", "789C", "*0#D")
_PAIRS = {
    digit: (ROWS[row], COLUMNS[column])
    for row, keys in enumerate(_KEYPAD)
    for column, digit in enumerate(keys)
}


def tones(digits: str, *, tone_ms: int = 100, gap_ms: int = 70, level_dbfs: float = -10.0) -> bytes:
    """8 kHz PCM of each digit's tone pair then a silent gap.

    `level_dbfs` is the peak of the pair (each tone half of it), relative to full scale.
    """
    unknown = sorted(set(digits) - DIGITS)
    if unknown:
        raise ValueError(f"not DTMF digits: {''.join(unknown)!r}")
    amplitude = 32767 * 10 ** (level_dbfs / 20) / 2
    t = np.arange(SAMPLE_RATE * tone_ms // 1000) / SAMPLE_RATE
    gap = np.zeros(SAMPLE_RATE * gap_ms // 1000)
    parts: list[npt.NDArray[np.float64]] = []
    for digit in digits:
        low, high = _PAIRS[digit]
        parts += [amplitude * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)), gap]
    if not parts:
        return b""
    return np.round(np.concatenate(parts)).astype("<i2").tobytes()


_WINDOW = 205
_HOP = 40
_CONFIRM = 3  # windows: 25.6 ms + 2 hops = 35.6 ms of tone
_RELEASE = 2  # windows without the digit before it may be reported again (a ~30 ms gap)

# Each tone at least -40 dBFS (amplitude of the sine), as a phone line's quietest digit.
_MIN_AMPLITUDE = 32767 * 10 ** (-40 / 20)
_NORMAL_TWIST_DB = 8.0  # the row tone may be this much louder than the column tone
_REVERSE_TWIST_DB = 4.0  # and the column tone this much louder than the row tone
_RELATIVE_PEAK_DB = 8.0  # over the group's next strongest tone
_MIN_SHARE = 0.7  # of the window's energy in the two tones

_FREQUENCIES = np.array(ROWS + COLUMNS)
# The Goertzel value of each frequency, for all windows at once: the DFT at exactly that
# frequency (not rounded to a bin), one matrix product.
_BASIS = np.exp(-2j * np.pi * np.outer(np.arange(_WINDOW), _FREQUENCIES) / SAMPLE_RATE)


def _power_ratio(db: float) -> float:
    return 10 ** (db / 10)


class DtmfDetector:
    """Finds DTMF digits in a stream of 8 kHz PCM fed in pieces of any length."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget buffered audio and the digit in progress."""
        self._odd_byte = b""
        self._pending = np.zeros(0)
        self._candidate: str | None = None
        self._run = 0
        self._reported: str | None = None
        self._absent = 0

    def feed(self, pcm: bytes) -> list[str]:
        """Digits whose tone was confirmed within `pcm`; each key press is reported once."""
        data = self._odd_byte + pcm
        whole = len(data) // 2 * 2
        self._odd_byte = data[whole:]
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float64)
        buffered = np.concatenate([self._pending, samples])
        if len(buffered) < _WINDOW:
            self._pending = buffered
            return []
        windows = np.lib.stride_tricks.sliding_window_view(buffered, _WINDOW)[::_HOP]
        self._pending = buffered[len(windows) * _HOP :]
        found: list[str] = []
        for digit in _classify(windows):
            confirmed = self._step(digit)
            if confirmed is not None:
                found.append(confirmed)
        return found

    def _step(self, digit: str | None) -> str | None:
        if digit is not None and digit == self._candidate:
            self._run += 1
        else:
            self._candidate, self._run = digit, 1
        if digit != self._reported:
            self._absent += 1
            if self._absent >= _RELEASE:
                self._reported = None
        else:
            self._absent = 0
        if digit is not None and self._run >= _CONFIRM and digit != self._reported:
            self._reported, self._absent = digit, 0
            return digit
        return None


def _classify(windows: npt.NDArray[np.float64]) -> list[str | None]:
    """The digit each window holds, or None."""
    spectra = windows @ _BASIS
    # A sine of amplitude A gives |X| = A * N / 2, and A**2 * N / 2 of the window's energy.
    amplitudes = 2 * np.abs(spectra) / _WINDOW
    energy = np.einsum("ij,ij->i", windows, windows)
    result: list[str | None] = []
    for amplitude, total in zip(amplitudes, energy, strict=True):
        result.append(_digit_of(amplitude, float(total)))
    return result


def _digit_of(amplitude: npt.NDArray[np.float64], total: float) -> str | None:
    rows, columns = amplitude[:4], amplitude[4:]
    row, column = int(np.argmax(rows)), int(np.argmax(columns))
    low, high = float(rows[row]), float(columns[column])
    if min(low, high) < _MIN_AMPLITUDE:
        return None
    low_power, high_power = low * low, high * high
    if low_power > high_power * _power_ratio(_NORMAL_TWIST_DB):
        return None
    if high_power > low_power * _power_ratio(_REVERSE_TWIST_DB):
        return None
    peak = _power_ratio(_RELATIVE_PEAK_DB)
    if any(low_power < peak * float(r) ** 2 for i, r in enumerate(rows) if i != row):
        return None
    if any(high_power < peak * float(c) ** 2 for i, c in enumerate(columns) if i != column):
        return None
    if (low_power + high_power) * _WINDOW / 2 < _MIN_SHARE * total:
        return None
    return _KEYPAD[row][column]
