"""Offline speech recognition with PocketSphinx 5 and the en-US model its wheel carries.

Free-form transcription with the bundled language model is close to useless on synthetic 8 kHz
speech (bench/voice_asr.py measures it; figures in bench/RESULTS.md), so a `listen` that names
the phrases it expects decodes *constrained*: a JSGF grammar of any number of those phrases,
where PocketSphinx's filler models (silence, [NOISE], [SPEECH]) absorb everything else, so audio
holding none of them comes back empty instead of forced onto one. A search that finds no path
at all is tried again with wider beams, then with a word insertion weight that favours words.

Audio is upsampled to the model's 16 kHz: running the 16 kHz model's filterbank at 8 kHz
(`samprate=8000`, `upperf` 3500 or 4000) recognised worse.

Confidence is an acoustic likelihood ratio: the recognised words' acoustic score against the
best unconstrained phone sequence (a phone loop) over the same frames, per frame,
`exp(ratio / 3)`, clipped to 0..1. 1.0 means no phone sequence explains those frames better.
Phrases that were said score higher than a phrase forced onto other speech, but the ranges
touch, so a phrase under `MIN_PHRASE_CONFIDENCE` is dropped, and an `expect` can demand more.
"""

from __future__ import annotations

import math
import os
import queue
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from runwire.voice.calls import EngineMissing
from runwire.voice.media import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from runwire.voice.tts import resample

_INSTALL = "speech recognition needs PocketSphinx: `pip install pocketsphinx` (5.x, with its model)"

_MODEL_RATE = 16000
_QUIETEST_SPEECH_DBFS = -50.0
_DITHER = 8.0
_FRAMES_PER_SECOND = 100
_CONFIDENCE_SCALE = 3.0  # nats per frame of acoustic likelihood ratio per e-fold of confidence
MIN_PHRASE_CONFIDENCE = 0.25
"""A constrained match under this is treated as not heard."""

# Grammar decoding: a low language weight and a phone insertion bonus, or the filler models win
# over real words on synthetic speech (measured over 3 syntheses of 13 cases: 38 of 42 phrases
# found and 6 false, against 22 and 1 with the defaults). Now and then no path reaches the
# grammar's end within these beams (no hypothesis at all, about 1 synthesis in 40 of a bank
# prompt): then the same weights with wider beams, which found the phrase alone where the
# last resort below also found a false one. Still no whole path: wider beams with a larger word
# bonus to make up for the fillers the wider search finds (36 and 6 when used for everything).
_GRAMMAR_CONFIG = {"lw": 2.0, "wip": 1.0, "pip": 10.0}
_WIDE_BEAMS = {"beam": 1e-60, "wbeam": 1e-40, "pbeam": 1e-60}
_GRAMMAR_WIDE_CONFIG = {**_GRAMMAR_CONFIG, **_WIDE_BEAMS}
_GRAMMAR_RETRY_CONFIG = {**_GRAMMAR_CONFIG, **_WIDE_BEAMS, "wip": 10.0}


# Free-form: narrower beams and no second pass, which bench/voice_asr.py measured at less than
# half the CPU of the defaults for the same (poor) accuracy.
_FREE_CONFIG = {"fwdflat": False, "beam": 1e-40, "wbeam": 1e-24}


@dataclass(frozen=True, slots=True)
class Recognition:
    text: str
    confidence: float
    """0..1, see the module docstring; 0.0 when nothing was recognised."""
    phrases: tuple[str, ...] = ()
    """For a constrained recognition, the expected phrases heard, in order (as normalised)."""


class Recognizes(Protocol):
    """What a call needs of a recognizer: `Recognizer`, or `RecognitionProcesses` around it."""

    def recognize(self, pcm: bytes, phrases: Sequence[str] = ()) -> Recognition:
        """Blocking: run it with `asyncio.to_thread`."""
        ...


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length (after `normalise`)."""
    ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i]
        for j, heard in enumerate(hyp, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != heard))
            )
        previous = current
    return previous[-1] / len(ref)


_ONES = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"),
    *("eighteen", "nineteen"),
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SYMBOLS = {"*": " star ", "#": " pound ", "&": " and ", "%": " percent ", "+": " plus "}


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = "" if n % 100 == 0 else " " + _number_words(n % 100)
        return _ONES[n // 100] + " hundred" + rest
    rest = "" if n % 1000 == 0 else " " + _number_words(n % 1000)
    return _number_words(n // 1000) + " thousand" + rest


def normalise(text: str) -> str:
    """Lower case words as spoken: numbers and keypad symbols as words, no punctuation."""
    text = text.lower()
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)

    def spoken(match: re.Match[str]) -> str:
        digits = match.group()
        if len(digits) > 6 or (len(digits) > 1 and digits.startswith("0")):
            return " " + " ".join(_ONES[int(d)] for d in digits) + " "
        return " " + _number_words(int(digits)) + " "

    text = re.sub(r"\d+", spoken, text)
    return " ".join(re.sub(r"[^a-z' ]+", " ", text).replace(" '", " ").split())


class _Worker:
    """One thread's decoders: the language model and phone loop, and grammars (tuned apart)."""

    def __init__(self, ps: Any) -> None:
        model = ps.get_model_path()
        self.free = ps.Decoder(loglevel="FATAL", **_FREE_CONFIG)
        self.free.add_allphone_file("loop", os.path.join(model, "en-us", "en-us-phone.lm.bin"))
        self.grammars = [
            ps.Decoder(loglevel="FATAL", lm=None, **config)
            for config in (_GRAMMAR_CONFIG, _GRAMMAR_WIDE_CONFIG, _GRAMMAR_RETRY_CONFIG)
        ]
        self._searches = 0

    def knows(self, word: str) -> bool:
        return self.grammars[0].lookup_word(word) is not None

    def phone_loop(self, pcm: bytes) -> list[tuple[int, int, float]]:
        """The best phone sequence: (start frame, end frame, log acoustic score) each."""
        self.free.activate_search("loop")
        _decode(self.free, pcm)
        return [(s.start_frame, s.end_frame, _log(s.ascore)) for s in self.free.seg() or ()]

    def free_form(self, pcm: bytes) -> list[tuple[str, int, int, float]]:
        self.free.activate_search()
        _decode(self.free, pcm)
        return _words(self.free)

    def constrained(self, pcm: bytes, jsgf: str, phrases: list[_Phrase]) -> list[_Heard]:
        self._searches += 1
        name = f"g{self._searches}"
        heard: list[_Heard] = []
        for decoder in self.grammars:
            decoder.add_jsgf_string(name, jsgf)
            try:
                decoder.activate_search(name)
                _decode(decoder, pcm)
                found = decoder.hyp() is not None
                words = _words(decoder)
            finally:
                decoder.remove_search(name)
            heard, complete = _parse(words, phrases)
            # Incomplete: no path reached the grammar's end, and PocketSphinx gave the best
            # partial one (a phrase cut short) or none at all; a wider search usually finds one.
            if found and complete:
                break
        return heard


def _has_speech(pcm: bytes) -> bool:
    """At least 50 ms, and a 20 ms stretch louder than -50 dBFS (the model hears words in
    digital silence)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    frames = len(samples) // FRAME_SAMPLES
    if frames * FRAME_MS < 50:
        return False
    power = np.mean(samples[: frames * FRAME_SAMPLES].reshape(frames, -1) ** 2, axis=1)
    return bool(power.max() > (32768 * 10 ** (_QUIETEST_SPEECH_DBFS / 20)) ** 2)


def _dithered(pcm: bytes) -> bytes:
    """`pcm` with faint noise (-72 dBFS, seeded: the same audio recognises the same way).

    Synthetic speech has runs of exact zeros, which the model's noise tracking and cepstral
    mean take badly: measured, a prompt's first words were never recognised without this.
    """
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    samples += np.random.default_rng(len(samples)).normal(0.0, _DITHER, len(samples))
    return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()


def _decode(decoder: Any, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def _log(score: float) -> float:
    return math.log(score) if score > 0 else -1e9


def _words(decoder: Any) -> list[tuple[str, int, int, float]]:
    """Recognised words (no silence or fillers, alternates as their word) with frames and score."""
    words = []
    for segment in decoder.seg() or ():
        word = segment.word
        if word.startswith(("<", "[", "+")):
            continue
        words.append(
            (word.split("(")[0], segment.start_frame, segment.end_frame, _log(segment.ascore))
        )
    return words


def _loop_score(loop: list[tuple[int, int, float]], start: int, end: int) -> float:
    """The phone loop's score over frames `start..end`, phones cut at the edges pro rata."""
    total = 0.0
    for first, last, score in loop:
        overlap = min(end, last) - max(start, first) + 1
        if overlap > 0:
            total += score * overlap / (last - first + 1)
    return total


def _confidence(
    words: list[tuple[str, int, int, float]], loop: list[tuple[int, int, float]]
) -> float:
    """exp(the words' per-frame likelihood ratio against the phone loop / scale)."""
    frames = sum(end - start + 1 for _, start, end, _ in words)
    if frames <= 0:
        return 0.0
    ratio = sum(score - _loop_score(loop, start, end) for _, start, end, score in words) / frames
    return max(0.0, min(1.0, math.exp(ratio / _CONFIDENCE_SCALE)))


@dataclass(frozen=True, slots=True)
class _Phrase:
    text: str
    """As normalised, reported when heard."""
    words: tuple[str, ...]
    """What is listened for: the longest run of words the dictionary knows."""


_Word = tuple[str, int, int, float]
"""A recognised word, its first and last frame, and its log acoustic score."""
_Heard = tuple[_Phrase, list[_Word]]


class Recognizer:
    """Recognises 8 kHz PCM; blocking and thread-safe, one set of decoders per concurrent call."""

    def __init__(self, max_workers: int | None = None) -> None:
        try:
            import pocketsphinx
        except ImportError as error:
            raise EngineMissing(_INSTALL) from error
        self._ps = pocketsphinx
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._max_workers = max_workers or os.cpu_count() or 1
        self._idle.put(self._new_worker())  # fail now if the model is broken
        self._workers = 1

    def _new_worker(self) -> _Worker:
        try:
            return _Worker(self._ps)
        except (RuntimeError, ValueError) as error:
            raise EngineMissing(
                f"PocketSphinx could not load its model ({error}); {_INSTALL}"
            ) from error

    def _created(self) -> _Worker:
        try:
            return self._new_worker()
        except BaseException:
            with self._lock:
                self._workers -= 1
            raise

    @contextmanager
    def _worker(self) -> Iterator[_Worker]:
        create = False
        with self._lock:
            try:
                worker: _Worker | None = self._idle.get_nowait()
            except queue.Empty:
                worker = None
                create = self._workers < self._max_workers
                self._workers += int(create)
        if worker is None:
            # Loading a model takes ~0.5 s: outside the lock, so idle workers stay available.
            worker = self._created() if create else self._idle.get()
        try:
            yield worker
        finally:
            self._idle.put(worker)

    def recognize(self, pcm: bytes, phrases: Sequence[str] = ()) -> Recognition:
        """What `pcm` says: free-form, or which of `phrases` it holds (none is an empty text)."""
        if not _has_speech(pcm):
            return Recognition("", 0.0)
        audio = _dithered(resample(pcm, SAMPLE_RATE, _MODEL_RATE))
        with self._worker() as worker:
            loop = worker.phone_loop(audio)
            if not phrases:
                words = worker.free_form(audio)
                text = " ".join(word for word, *_ in words)
                return Recognition(text, _confidence(words, loop) if words else 0.0)
            expected = self._phrases(worker, phrases)
            if not expected:
                return Recognition("", 0.0)
            heard = worker.constrained(audio, _grammar(expected), expected)
        kept: list[_Heard] = []
        for phrase, words in heard:
            if _confidence(words, loop) < MIN_PHRASE_CONFIDENCE:
                continue
            # The same phrase twice in a row is one phrase matched in two halves, or a filler
            # stretch matched as it again (every case measured; a real repeat is rarely adjacent).
            if kept and kept[-1][0] == phrase:
                kept[-1] = (phrase, kept[-1][1] + words)
            else:
                kept.append((phrase, words))
        if not kept:
            return Recognition("", 0.0)
        texts = tuple(phrase.text for phrase, _ in kept)
        all_words = [word for _, words in kept for word in words]
        return Recognition(" ".join(texts), _confidence(all_words, loop), texts)

    @staticmethod
    def _phrases(worker: _Worker, phrases: Sequence[str]) -> list[_Phrase]:
        result: dict[str, _Phrase] = {}
        for phrase in phrases:
            text = normalise(phrase)
            # An unknown word (a brand name) cannot be listened for, and neither a phone loop in
            # its place nor leaving it to the fillers worked (measured: the phrase was never
            # heard), so the phrase is listened for by its longest run of known words.
            runs: list[list[str]] = [[]]
            for word in text.split():
                if worker.knows(word):
                    runs[-1].append(word)
                elif runs[-1]:
                    runs.append([])
            longest = max(runs, key=len)
            if longest and text not in result:
                result[text] = _Phrase(text, tuple(longest))
        return list(result.values())


def _grammar(phrases: list[_Phrase]) -> str:
    choices = " | ".join("( " + " ".join(phrase.words) + " )" for phrase in phrases)
    # Fillers (silence, noise, other speech) may come between any two words, so any stretch
    # of audio around, between or instead of the phrases is allowed.
    return f"#JSGF V1.0;\ngrammar expected;\npublic <heard> = <phrase>*;\n<phrase> = {choices};\n"


def _parse(words: list[_Word], phrases: list[_Phrase]) -> tuple[list[_Heard], bool]:
    """Split the grammar's word sequence back into its phrases (longest first), and whether
    every word was part of one."""
    ordered = sorted(phrases, key=lambda phrase: -len(phrase.words))
    heard: list[_Heard] = []
    at = 0
    complete = True
    while at < len(words):
        for phrase in ordered:
            span = words[at : at + len(phrase.words)]
            if tuple(word for word, *_ in span) == phrase.words:
                heard.append((phrase, span))
                at += len(span)
                break
        else:
            complete = False
            at += 1
    return heard, complete
