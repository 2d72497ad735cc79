"""espeak-ng speaks 8 kHz PCM; the resampler keeps the phone band and removes what would alias."""

from __future__ import annotations

import asyncio

import numpy as np

from runwire.voice.media import SAMPLE_RATE
from runwire.voice.tts import Speaker, default_speaker, resample


def level_db(samples: np.ndarray) -> float:  # type: ignore[type-arg]
    return float(10 * np.log10(np.mean(samples.astype(np.float64) ** 2) + 1e-12))


def test_speech_is_8khz_pcm_of_a_plausible_length_and_level() -> None:
    pcm = Speaker().speak("Welcome to Runwire bank. For balances press 1.")
    samples = np.frombuffer(pcm, dtype="<i2")
    seconds = len(samples) / SAMPLE_RATE
    assert 1.5 < seconds < 6
    assert level_db(samples) > 50  # well above silence (RMS over ~300)
    assert np.abs(samples).max() < 32767  # not clipped


def test_a_faster_rate_is_shorter_and_empty_text_is_silent() -> None:
    text = "Please say the name of the person you are calling."
    slow = Speaker(words_per_minute=120).speak(text)
    fast = Speaker(words_per_minute=240).speak(text)
    assert len(fast) < 0.7 * len(slow)
    assert Speaker().speak("  ") == b""
    assert default_speaker() is default_speaker()


async def test_speakers_are_safe_across_threads() -> None:
    # espeak-ng varies its output slightly from run to run, so compare lengths: interleaved
    # syntheses would swap or mix audio between a short and a long text.
    speaker = Speaker()
    texts = ["yes", "Your call is important to us, please stay on the line."] * 3
    alone = [len(speaker.speak(text)) for text in texts]
    together = await asyncio.gather(*(asyncio.to_thread(speaker.speak, text) for text in texts))
    assert all(
        abs(len(pcm) - length) < 0.05 * length for pcm, length in zip(together, alone, strict=True)
    )


def tone(frequency: float, rate: int, seconds: float = 1.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (10000 * np.sin(2 * np.pi * frequency * t)).astype("<i2").tobytes()


def test_resampling_keeps_the_phone_band_and_drops_what_would_alias() -> None:
    def gain_db(frequency: float) -> float:
        out = np.frombuffer(resample(tone(frequency, 22050), 22050, 8000), dtype="<i2")
        assert len(out) == 8000
        return level_db(out[500:-500]) - level_db(np.array([10000 / np.sqrt(2)]))

    assert abs(gain_db(300)) < 0.2
    assert abs(gain_db(3000)) < 0.2
    assert gain_db(5000) < -60  # would land at 3 kHz
    assert gain_db(7000) < -60
    up = np.frombuffer(resample(tone(1000, 8000), 8000, 16000), dtype="<i2")
    assert len(up) == 16000
    assert abs(level_db(up[500:-500]) - level_db(np.array([10000 / np.sqrt(2)]))) < 0.2
