"""The menu engine: one IVR menu run over one answered call's media.

It speaks each node's prompt (TTS, synthesized once per menu and text), then hears the caller:
DTMF digits (RFC 4733 events or in-band tones, both arrive as `DigitHeard`) or speech, recognized
against the node's keywords only. Digits pressed during a prompt are kept (type-ahead), as on a
real IVR. Everything it heard is kept as `Heard` records, and every step is reported as an
`IvrEvent` for log lines.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from runwire.voice.asr import Recognition, Recognizes
from runwire.voice.calls import HungUpBy
from runwire.voice.ivr.menu import Hold, Menu, Node
from runwire.voice.listening import hear
from runwire.voice.media import SAMPLE_RATE, DigitHeard, Inbound, MediaLeg
from runwire.voice.recognition_processes import default_recognizer
from runwire.voice.tts import Speaker

DEFAULT_WORDS_PER_MINUTE = 170


class HeardKind(StrEnum):
    DTMF = "DTMF"
    SPEECH = "SPEECH"


@dataclass(frozen=True, slots=True)
class Heard:
    """One answer the IVR heard at a menu node, and what it made of it."""

    node: str
    kind: HeardKind
    digits: str = ""
    transcript: str = ""
    confidence: float | None = None
    choice: str | None = None
    """The digits or keyword that matched a branch; None when it matched none (invalid)."""
    started: float | None = None
    """Seconds from the answer to the start of the answer (speech start or first digit)."""
    ended: float | None = None
    """Seconds from the answer to the end of the answer (speech end or last digit)."""
    recognition_ms: float | None = None
    """How long recognizing the speech took."""


class EventKind(StrEnum):
    PROMPT = "PROMPT"
    HEARD = "HEARD"
    NO_INPUT = "NO_INPUT"
    INVALID = "INVALID"
    HOLD = "HOLD"
    TRANSFERRED = "TRANSFERRED"
    HUNG_UP = "HUNG_UP"


@dataclass(frozen=True, slots=True)
class IvrEvent:
    """Something the IVR did or heard, `at` seconds after the call was answered."""

    kind: EventKind
    node: str
    at: float
    text: str = ""
    """The prompt spoken (PROMPT), the queue (HOLD, TRANSFERRED) or the URI a refer sent the
    caller to (TRANSFERRED), who hung up (HUNG_UP)."""
    heard: Heard | None = None

    def describe(self) -> str:
        """One readable line, e.g. `welcome: heard "1" (DTMF)`."""
        if self.kind is EventKind.PROMPT:
            return f'{self.node}: said "{self.text}"'
        if self.kind is EventKind.HEARD and self.heard is not None:
            heard = self.heard
            if heard.kind is HeardKind.DTMF:
                what = f'heard "{heard.digits}" (DTMF)'
            else:
                confidence = f" ({heard.confidence:.2f})" if heard.confidence is not None else ""
                what = f'heard "{heard.transcript}"{confidence}'
            return f"{self.node}: {what}" + ("" if heard.choice is not None else ", no such choice")
        if self.kind is EventKind.NO_INPUT:
            return f"{self.node}: no input"
        if self.kind is EventKind.INVALID:
            return f"{self.node}: invalid choice"
        if self.kind is EventKind.HOLD:
            return f"{self.node}: holding in queue {self.text}"
        if self.kind is EventKind.TRANSFERRED:
            return f"{self.node}: transferred to {self.text}"
        return f"{self.node}: hung up by {self.text}"


class Prompts:
    """One menu's prompts as speech, each text synthesized once and shared by every call."""

    def __init__(self, voice: str | None = None, words_per_minute: int | None = None) -> None:
        self._voice = voice
        self._words_per_minute = words_per_minute
        self._speaker: Speaker | None = None
        self._lock = threading.Lock()
        self._done: dict[str, bytes] = {}
        self._pending: dict[str, asyncio.Future[bytes]] = {}

    @classmethod
    def of(cls, menu: Menu) -> Prompts:
        return cls(menu.voice, menu.words_per_minute)

    async def audio(self, text: str) -> bytes:
        """`text` spoken as PCM; raises EngineMissing when no TTS engine is installed."""
        if text in self._done:
            return self._done[text]
        pending = self._pending.get(text)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = asyncio.ensure_future(asyncio.to_thread(self._speak, text))
            self._pending[text] = pending
        # Shielded: a call hanging up mid-synthesis leaves the prompt cached for the next call.
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            raise
        except Exception:
            if self._pending.get(text) is pending:
                del self._pending[text]
            raise

    async def warm(self, texts: frozenset[str]) -> None:
        """Synthesize every text now (a server does this before it answers its first call)."""
        await asyncio.gather(*(self.audio(text) for text in sorted(texts)))

    def _speak(self, text: str) -> bytes:
        with self._lock:
            if self._speaker is None:
                self._speaker = Speaker(
                    self._voice or "en-us", self._words_per_minute or DEFAULT_WORDS_PER_MINUTE
                )
            speaker = self._speaker
        pcm = speaker.speak(text)
        self._done[text] = pcm
        return pcm


class Recognizers:
    """Recognition off the event loop, by the process's shared recognizer (worker processes,
    started on first use: loading takes ~0.5 s) unless one is given."""

    def __init__(self, recognizer: Recognizes | None = None) -> None:
        self._recognizer = recognizer
        self._lock = threading.Lock()

    async def recognize(self, pcm: bytes, phrases: tuple[str, ...]) -> Recognition:
        """What `pcm` says, constrained to `phrases`; raises EngineMissing without PocketSphinx."""
        return await asyncio.to_thread(self._recognize, pcm, phrases)

    def _recognize(self, pcm: bytes, phrases: tuple[str, ...]) -> Recognition:
        with self._lock:
            if self._recognizer is None:
                self._recognizer = default_recognizer()
            recognizer = self._recognizer
        return recognizer.recognize(pcm, phrases=phrases)


class _Inbox:
    """What the caller sends, pumped from the media for the whole call.

    Between answers, audio is dropped but digits are kept, so a key pressed during a prompt
    answers the next question; `listen()` hands `hear` the digits kept and everything after.
    """

    def __init__(self, media: MediaLeg) -> None:
        self._media = media
        self._items: deque[Inbound] = deque()
        self._arrived = asyncio.Event()
        self._listening = False
        self.ended = asyncio.Event()
        self.digit_times: list[float] = []
        """When each digit `hear` has read since `listen()` was pressed."""

    async def pump(self) -> None:
        async for item in self._media.heard():
            if self._listening or isinstance(item, DigitHeard):
                self._items.append(item)
                self._arrived.set()
        self.ended.set()
        self._arrived.set()

    def listen(self) -> AsyncIterator[Inbound]:
        kept = [item for item in self._items if isinstance(item, DigitHeard)]
        self._items.clear()
        self._items.extend(kept)
        self._listening = True
        self.digit_times = []
        return self

    def stop_listening(self) -> None:
        self._listening = False

    def __aiter__(self) -> _Inbox:
        return self

    async def __anext__(self) -> Inbound:
        # A plain iterator, not a generator: `hear` may cancel a wait (a timeout) and go on.
        while not self._items:
            if self.ended.is_set():
                raise StopAsyncIteration
            self._arrived.clear()
            await self._arrived.wait()
        item = self._items.popleft()
        if isinstance(item, DigitHeard):
            self.digit_times.append(item.at)
        return item


class _CallerHungUp(Exception):
    pass


class IvrSimulator:
    """Runs `menu` over `media` (an answered call) until either side hangs up.

    `prompts` and `recognizers` are shared between calls of one server or driver; `on_event`
    sees every step as it happens. `heard` and `events` hold the whole call afterwards.
    `transfer` hands the caller to a transfer node's `refer` URI (a SIP REFER, or its in-process
    equivalent); the simulator hangs up once it returns. Without it a refer just hangs up.
    """

    def __init__(
        self,
        menu: Menu,
        media: MediaLeg,
        *,
        prompts: Prompts | None = None,
        recognizers: Recognizers | None = None,
        on_event: Callable[[IvrEvent], None] | None = None,
        transfer: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        self.menu = menu
        self.transfer = transfer
        self.media = media
        self.prompts = prompts or Prompts.of(menu)
        self.recognizers = recognizers or Recognizers()
        self.on_event = on_event
        self.heard: list[Heard] = []
        self.events: list[IvrEvent] = []
        self._answered = time.monotonic()
        self._inbox = _Inbox(media)
        self._node = menu.start

    async def run(self) -> HungUpBy:
        """Run the menu; returns who hung up: US (the IVR, at a hangup node) or FAR_END (the
        caller's media ended). Cancelling it stops at once: nothing is left running."""
        self._answered = time.monotonic()
        pump = asyncio.create_task(self._inbox.pump(), name="ivr-inbox")
        flow = asyncio.create_task(self._flow(), name="ivr-flow")
        try:
            await asyncio.wait((flow, pump), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # If we were cancelled, the CancelledError in flight is re-raised after this.
            for task in (flow, pump):
                task.cancel()
            await asyncio.wait((flow, pump))
        pump_error = None if pump.cancelled() else pump.exception()
        if pump_error is not None:
            raise pump_error
        if not flow.cancelled():
            error = flow.exception()
            if error is None:
                return self._hung_up(HungUpBy.US)
            if not isinstance(error, _CallerHungUp):
                raise error
        return self._hung_up(HungUpBy.FAR_END)

    def _hung_up(self, by: HungUpBy) -> HungUpBy:
        self._event(EventKind.HUNG_UP, self._node, "ivr" if by is HungUpBy.US else "caller")
        return by

    async def _flow(self) -> None:
        node_id: str | None = self.menu.start
        while node_id is not None:
            self._node = node_id
            node_id = await self._visit(self.menu.nodes[node_id])

    async def _visit(self, node: Node) -> str | None:
        """Run one node; the next node's id, or None to hang up."""
        await self._say(node, node.say)
        if node.hangup:
            return None
        if node.goto is not None:
            return node.goto
        if node.transfer is not None:
            transfer = node.transfer
            self._event(EventKind.HOLD, node.id, transfer.queue)
            await self.media.play(hold_audio(transfer.hold, transfer.hold_ms))
            self._check_caller()
            if transfer.refer is not None:
                self._event(EventKind.TRANSFERRED, node.id, transfer.refer)
                if self.transfer is not None:
                    await self.transfer(transfer.refer)
                return None
            self._event(EventKind.TRANSFERRED, node.id, transfer.queue)
            if transfer.connected:
                await self._say(node, transfer.connected)
            return transfer.goto
        assert node.menu is not None
        misses = {EventKind.NO_INPUT: 0, EventKind.INVALID: 0}
        while True:
            target, miss = await self._answer(node)
            if miss is None:
                return target
            self._event(miss, node.id)
            misses[miss] += 1
            fallback = node.no_input if miss is EventKind.NO_INPUT else node.invalid
            if misses[miss] > fallback.retries:
                return fallback.goto
            if fallback.reprompt:
                await self._say(node, fallback.reprompt)
            await self._say(node, node.say)

    async def _answer(self, node: Node) -> tuple[str | None, EventKind | None]:
        """Hear one answer: (the branch's node id, None), or (None, NO_INPUT or INVALID)."""
        choices = node.menu
        assert choices is not None
        try:
            utterance = await hear(
                self._inbox.listen(),
                start_timeout=choices.no_input_ms / 1000,
                end_silence_ms=self.menu.end_silence_ms,
                max_seconds=self.menu.max_input_ms / 1000,
                until_digits=max(1, choices.digits),
            )
        finally:
            self._inbox.stop_listening()
        self._check_caller()
        started = self._since(utterance.speech_started)
        ended = self._since(utterance.speech_ended)
        if utterance.digits:
            digits = utterance.digits[: max(1, choices.digits)]
            choice = digits if digits in choices.dtmf else None
            times = self._inbox.digit_times[: len(digits)]
            self._record(
                Heard(
                    node.id,
                    HeardKind.DTMF,
                    digits=digits,
                    choice=choice,
                    started=self._since(times[0] if times else None),
                    ended=self._since(times[-1] if times else None),
                )
            )
            return (choices.dtmf[digits], None) if choice is not None else (None, EventKind.INVALID)
        if utterance.speech_started is None or not utterance.pcm:
            return None, EventKind.NO_INPUT
        phrases = tuple(choices.keywords)
        began = time.monotonic()
        recognition = await self.recognizers.recognize(utterance.pcm, phrases)
        transcript, confidence = recognition.text, recognition.confidence
        recognition_ms = (time.monotonic() - began) * 1000
        keyword = match_keyword(transcript, phrases)
        if keyword is not None and confidence < self.menu.min_confidence:
            keyword = None
        self._record(
            Heard(
                node.id,
                HeardKind.SPEECH,
                transcript=transcript,
                confidence=confidence,
                choice=keyword,
                started=started,
                ended=ended,
                recognition_ms=round(recognition_ms, 1),
            )
        )
        if keyword is None:
            return None, EventKind.INVALID
        return choices.keywords[keyword], None

    async def _say(self, node: Node, text: str) -> None:
        pcm = await self.prompts.audio(text)
        self._check_caller()
        self._event(EventKind.PROMPT, node.id, text)
        await self.media.play(pcm)
        self._check_caller()

    def _check_caller(self) -> None:
        if self._inbox.ended.is_set():
            raise _CallerHungUp

    def _record(self, heard: Heard) -> None:
        self.heard.append(heard)
        self._event(EventKind.HEARD, heard.node, heard=heard)

    def _event(
        self, kind: EventKind, node: str, text: str = "", heard: Heard | None = None
    ) -> None:
        event = IvrEvent(kind, node, self._now(), text, heard)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _now(self) -> float:
        return round(time.monotonic() - self._answered, 3)

    def _since(self, at: float | None) -> float | None:
        return None if at is None else round(at - self._answered, 3)


def match_keyword(transcript: str, keywords: tuple[str, ...]) -> str | None:
    """The keyword said first in `transcript` (whole words, any case), if any."""
    text = f" {' '.join(transcript.lower().split())} "
    found = [(text.find(f" {keyword} "), keyword) for keyword in keywords]
    said = sorted((at, -len(keyword), keyword) for at, keyword in found if at >= 0)
    return said[0][2] if said else None


def hold_audio(hold: Hold, duration_ms: int) -> bytes:
    """What a caller on hold hears for `duration_ms`: a soft four-note tune, a ringback tone
    (440 + 480 Hz, 2 s on, 4 s off) or silence. Single tones and this pair never read as DTMF."""
    samples = SAMPLE_RATE * duration_ms // 1000
    t = np.arange(samples) / SAMPLE_RATE
    if hold is Hold.SILENCE or samples == 0:
        return bytes(samples * 2)
    if hold is Hold.RINGBACK:
        wave = 0.5 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t))
        wave *= (t % 6.0) < 2.0
        level = 32767 * 10 ** (-18 / 20)
    else:
        notes = np.array([523.25, 659.25, 783.99, 659.25])  # C5 E5 G5 E5, 300 ms each
        index = (t / 0.3).astype(int) % len(notes)
        within = t % 0.3
        envelope = np.minimum(1.0, np.minimum(within, 0.3 - within) / 0.02)
        wave = np.sin(2 * np.pi * notes[index] * t) * envelope
        level = 32767 * 10 ** (-20 / 20)
    return np.round(wave * level).astype("<i2").tobytes()
