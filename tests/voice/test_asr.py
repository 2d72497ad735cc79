"""Recognition of espeak-ng speech through µ-law: constrained phrases, confidence, WER."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from runwire.voice.asr import Recognition, Recognizer, normalise, word_error_rate
from runwire.voice.calls import EngineMissing
from runwire.voice.codecs import ulaw_decode, ulaw_encode


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(max_workers=1)


SPEAK = (
    "import sys; from runwire.voice.tts import Speaker;"
    " sys.stdout.buffer.write(Speaker().speak(sys.argv[1]))"
)


class FreshSpeaker:
    """Says each text in a process of its own.

    espeak-ng's voice carries state from one synthesis to the next (its pitch flutter, a static
    of its wave generator), so in a process that has spoken before, the same text comes out a
    little different, and a borderline recognition would depend on which tests ran first. A new
    process says a text the same way every time.
    """

    def speak(self, text: str) -> bytes:
        done = subprocess.run([sys.executable, "-c", SPEAK, text], capture_output=True, check=True)
        return done.stdout


@pytest.fixture(scope="module")
def speaker() -> FreshSpeaker:
    return FreshSpeaker()


def on_the_line(speaker: FreshSpeaker, text: str) -> bytes:
    return ulaw_decode(ulaw_encode(speaker.speak(text)))


def test_word_error_rate_counts_edits_over_the_reference() -> None:
    assert word_error_rate("press one for balances", "press one for balances") == 0.0
    assert word_error_rate("press one for balances", "press 1 for balance") == 0.25
    assert word_error_rate("yes", "") == 1.0
    assert word_error_rate("yes", "yes yes") == 1.0
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("For cards, press 2.", "for cards press two") == 0.0


def test_normalise_says_numbers_and_keys_as_words() -> None:
    assert normalise("Press 1, or #.") == "press one or pound"
    assert normalise("Your balance is $1,240.") == "your balance is one thousand two hundred forty"
    assert normalise("Call 0800 now") == "call zero eight zero zero now"


def test_constrained_recognition_picks_the_phrase_that_was_said(
    recognizer: Recognizer, speaker: FreshSpeaker
) -> None:
    prompt = on_the_line(
        speaker, "Welcome to Runwire bank. For balances press 1. For cards press 2."
    )
    heard = recognizer.recognize(prompt, ["for balances press 1", "agent"])
    assert heard.phrases == ("for balances press one",)
    assert heard.text == "for balances press one"
    caller = on_the_line(speaker, "I want to check my balance")
    assert recognizer.recognize(caller, ["agent", "check my balance"]).phrases == (
        "check my balance",
    )
    operator = on_the_line(speaker, "I would like to speak to an operator")
    assert recognizer.recognize(operator, ["operator", "balance"]).text == "operator"


def test_a_phrase_not_said_is_not_heard(recognizer: Recognizer, speaker: FreshSpeaker) -> None:
    assert recognizer.recognize(on_the_line(speaker, "maybe later"), ["yes", "no"]) == (
        Recognition("", 0.0)
    )
    caller = recognizer.recognize(
        on_the_line(speaker, "I want to check my balance"), ["lost card", "goodbye"]
    )
    assert caller.confidence < 0.3


def test_free_form_is_less_confident_than_a_phrase_heard(
    recognizer: Recognizer, speaker: FreshSpeaker
) -> None:
    # Free-form transcripts of synthetic 8 kHz speech are mostly wrong, and say so.
    pcm = on_the_line(speaker, "Thank you for calling. Goodbye.")
    free = recognizer.recognize(pcm)
    constrained = recognizer.recognize(pcm, ["goodbye", "agent"])
    assert constrained.phrases == ("goodbye",)
    assert free.confidence < 0.4 < constrained.confidence
    assert recognizer.recognize(bytes(16000)) == Recognition("", 0.0)


def test_unknown_words_are_left_to_the_fillers(
    recognizer: Recognizer, speaker: FreshSpeaker
) -> None:
    pcm = on_the_line(speaker, "Welcome to Runwire bank.")
    heard = recognizer.recognize(pcm, ["welcome to runwire bank", "goodbye"])
    assert heard.phrases == ("welcome to runwire bank",)
    assert recognizer.recognize(pcm, ["runwire"]) == Recognition("", 0.0)


def test_recognition_is_well_under_real_time(recognizer: Recognizer, speaker: FreshSpeaker) -> None:
    pcm = on_the_line(speaker, "For balances press 1. For cards press 2. For anything else, stay.")
    started = time.process_time()
    recognizer.recognize(pcm, ["press 1", "press 2", "agent"])
    assert time.process_time() - started < 0.5 * len(pcm) / 16000


def test_a_missing_engine_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    with pytest.raises(EngineMissing, match="pip install pocketsphinx"):
        Recognizer()


async def test_concurrent_recognitions_match_one_at_a_time(speaker: FreshSpeaker) -> None:
    recognizer = Recognizer(max_workers=2)
    calls = [
        (on_the_line(speaker, "I want to check my balance"), ["check my balance", "agent"]),
        (on_the_line(speaker, "operator please"), ["operator", "main menu"]),
    ] * 2
    alone = [recognizer.recognize(pcm, phrases) for pcm, phrases in calls]
    together = await asyncio.gather(
        *(asyncio.to_thread(recognizer.recognize, pcm, phrases) for pcm, phrases in calls)
    )
    # Each worker's decoders carry a little history (their noise and cepstral mean estimates),
    # so a confidence differs in its second decimal from one worker to another.
    assert [heard.phrases for heard in together] == [heard.phrases for heard in alone]
    assert all(
        abs(a.confidence - b.confidence) < 0.05 for a, b in zip(together, alone, strict=True)
    )
    assert [heard.phrases for heard in alone[:2]] == [("check my balance",), ("operator",)]
