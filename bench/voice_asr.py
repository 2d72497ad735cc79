"""Recognising espeak-ng speech through µ-law: WER, confidence and CPU, free and constrained.

.venv/bin/python bench/voice_asr.py
"""

from __future__ import annotations

import time

from runwire.voice.asr import Recognizer, word_error_rate
from runwire.voice.codecs import ulaw_decode, ulaw_encode
from runwire.voice.tts import Speaker

# (what is said, the phrases a scenario would expect: the first ones said, the rest not)
CASES = [
    (
        "Welcome to Runwire bank. For balances press 1. For cards press 2.",
        ["for balances press 1", "for cards press 2", "press 3", "agent"],
    ),
    ("I want to check my balance", ["check my balance", "agent", "lost card"]),
    ("agent", ["agent", "balance", "yes", "no"]),
    ("yes", ["yes", "no"]),
    ("no", ["no", "yes"]),
    ("Please hold while we connect you to an agent.", ["agent", "goodbye"]),
    ("Your balance is 1,240 dollars.", ["your balance is", "goodbye"]),
    ("Sorry, I did not understand that.", ["did not understand", "main menu"]),
    ("Thank you for calling. Goodbye.", ["goodbye", "agent", "press 1"]),
    ("To report a lost card, press 3.", ["lost card", "press 3", "balance"]),
    ("Main menu.", ["main menu", "operator"]),
    ("operator please", ["operator", "main menu"]),
    ("maybe later", ["yes", "no"]),
]


REPEATS = 3


def main() -> None:
    speaker, recognizer = Speaker(), Recognizer(max_workers=1)
    audio_seconds = cpu_free = cpu_constrained = 0.0
    free_errors: list[float] = []
    hits = misses = false = 0
    said_confidence: list[float] = []
    free_confidence: list[float] = []
    # espeak-ng varies its output a little from run to run: each case is spoken REPEATS times.
    for text, phrases in [case for case in CASES for _ in range(REPEATS)]:
        pcm = ulaw_decode(ulaw_encode(speaker.speak(text)))
        audio_seconds += len(pcm) / 16000
        started = time.process_time()
        free = recognizer.recognize(pcm)
        cpu_free += time.process_time() - started
        started = time.process_time()
        constrained = recognizer.recognize(pcm, phrases)
        cpu_constrained += time.process_time() - started
        free_errors.append(word_error_rate(text, free.text))
        said = [p for p in phrases if p.lower() in text.lower().replace(",", "").replace(".", "")]
        for phrase in phrases:
            found = any(word_error_rate(phrase, heard) == 0 for heard in constrained.phrases)
            hits += found and phrase in said
            misses += not found and phrase in said
            false += found and phrase not in said
        if constrained.phrases:
            said_confidence.append(constrained.confidence)
        print(f"{text!r}")
        print(f"  free-form   WER {free_errors[-1]:.2f} conf {free.confidence:.2f}: {free.text!r}")
        print(f"  constrained conf {constrained.confidence:.2f}: {constrained.phrases}")
        free_confidence.append(free.confidence)
    print(f"free-form mean WER {sum(free_errors) / len(free_errors):.2f}")
    print(f"free-form confidence {min(free_confidence):.2f}-{max(free_confidence):.2f}")
    print(f"constrained: {hits} phrases found, {misses} missed, {false} false")
    print(f"constrained confidence {min(said_confidence):.2f}-{max(said_confidence):.2f}")
    print(f"CPU per audio second: free-form {cpu_free / audio_seconds:.3f},")
    print(f"  constrained {cpu_constrained / audio_seconds:.3f} ({audio_seconds:.1f} s of audio)")


if __name__ == "__main__":
    main()
