"""DTMF tones and the detector: every digit, through G.711 and noise; speech and noise fire none."""

from __future__ import annotations

import numpy as np
import pytest

from runwire.voice.codecs import ulaw_decode, ulaw_encode
from runwire.voice.dtmf import DtmfDetector, tones
from runwire.voice.media import FRAME_BYTES
from runwire.voice.tts import Speaker

ALL = "0123456789*#ABCD"


def detect(pcm: bytes, piece: int = FRAME_BYTES) -> str:
    detector = DtmfDetector()
    found: list[str] = []
    for start in range(0, len(pcm), piece):
        found += detector.feed(pcm[start : start + piece])
    return "".join(found)


def with_noise(pcm: bytes, snr_db: float, seed: int = 7) -> bytes:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    loud = samples[np.abs(samples) > 0]
    sigma = np.sqrt(np.mean(loud**2)) / 10 ** (snr_db / 20)
    noise = np.random.default_rng(seed).normal(0, sigma, len(samples))
    return np.clip(samples + noise, -32768, 32767).astype("<i2").tobytes()


def test_tones_are_the_standard_pairs_with_a_gap() -> None:
    pcm = tones("5", tone_ms=100, gap_ms=50)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    assert len(samples) == 1200
    assert not samples[800:].any()
    spectrum = np.abs(np.fft.rfft(samples[:800]))
    # 10 Hz bins: the two strongest are 770 Hz and 1336 Hz (digit 5).
    assert sorted(np.argsort(spectrum)[-2:] * 10) == [770, 1340] or sorted(
        np.argsort(spectrum)[-2:] * 10
    ) == [770, 1330]


def test_a_digit_outside_the_keypad_is_refused() -> None:
    with pytest.raises(ValueError, match="E"):
        tones("12E")


@pytest.mark.parametrize("piece", [1, 77, FRAME_BYTES, 1 << 20])
def test_every_digit_is_detected_whatever_the_pieces(piece: int) -> None:
    assert detect(tones(ALL), piece) == ALL


def test_digits_survive_mulaw_and_noise() -> None:
    through_g711 = ulaw_decode(ulaw_encode(tones(ALL)))
    assert detect(through_g711) == ALL
    assert detect(with_noise(through_g711, snr_db=10)) == ALL
    assert detect(tones(ALL, level_dbfs=-30)) == ALL


def test_a_repeated_digit_is_two_presses_and_a_held_one_is_one() -> None:
    assert detect(tones("11")) == "11"
    assert detect(tones("1111", tone_ms=45, gap_ms=40)) == "1111"
    assert detect(tones("7", tone_ms=2000)) == "7"


def test_a_blip_shorter_than_a_digit_is_not_one() -> None:
    assert detect(tones("9", tone_ms=15)) == ""


def test_speech_and_noise_fire_no_digits() -> None:
    speaker = Speaker()
    speech = b"".join(
        speaker.speak(text)
        for text in (
            "Welcome to Runwire bank. For balances press 1. For cards press 2.",
            "Your balance is one thousand two hundred and forty dollars and sixty seven cents.",
            "To hear these options again, press star. Please hold for an agent.",
        )
    )
    assert detect(speech) == ""
    assert detect(ulaw_decode(ulaw_encode(speech))) == ""
    noise = np.random.default_rng(3).normal(0, 4000, 8000 * 5)
    assert detect(np.clip(noise, -32768, 32767).astype("<i2").tobytes()) == ""


def test_reset_forgets_a_tone_in_progress() -> None:
    detector = DtmfDetector()
    pcm = tones("3", tone_ms=100, gap_ms=0)
    assert detector.feed(pcm[:300]) == []
    detector.reset()
    assert detector.feed(pcm[300:400]) == []
    assert detector.feed(pcm[400:]) == ["3"]
