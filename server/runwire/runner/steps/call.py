"""The `call` step: place a phone call and run a script on it (listen, expect, press, say, …).

The call goes through a `runwire.voice.calls.CallDriver` (`sip` or `simulated`); every moment of it
is a CALL event (domain/calls.py), every action a span, and at the end (also on a stop or a
failure) the two-channel recording and the transcript are stored as artifacts of the attempt.
The script's syntax is in call_script.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runwire.domain.calls import CallEvent, CallEventType
from runwire.domain.clock import utc_now
from runwire.domain.models import OutputStream
from runwire.errors import InvalidDefinition, RunwireError
from runwire.runner import spans
from runwire.runner.steps.base import Observed, StepContext, StepResult
from runwire.runner.steps.call_script import (
    Action,
    CallScript,
    Expect,
    Hangup,
    Listen,
    Press,
    Say,
    Wait,
    check,
    parse_script,
)
from runwire.voice.calls import (
    Account,
    Call,
    CallDriver,
    CallFailed,
    DialRequest,
    EngineMissing,
    HungUpBy,
    Progress,
)
from runwire.voice.codecs import wav_bytes
from runwire.voice.media import DigitMethod, Inbound, MediaLeg

if TYPE_CHECKING:  # imported when a call needs them: numpy, PocketSphinx, espeak-ng
    from runwire.voice.asr import Recognizes
    from runwire.voice.tts import Speaker

SPAN_KIND = "call"
_WORD = re.compile(r"[\w']+")
_PROGRESS = {
    Progress.DIALING: CallEventType.DIALING,
    Progress.RINGING: CallEventType.RINGING,
    Progress.ANSWERED: CallEventType.ANSWERED,
}


# A pressed digit's tone and the silence after it (RFC 4733 event or in-band), as phones send.
_TONE_MS = 100
_DIGIT_GAP_MS = 70


class CallStep:
    """Dial, run the script, hang up; each `expect` that does not hold fails the step."""

    name = "call"
    runs_processes = False  # who may start it inline: see ExecutionService.admit

    def __init__(
        self,
        default_driver: str = "sip",
        sip_local_host: str = "127.0.0.1",
        sip_public_host: str | None = None,
    ) -> None:
        self._default_driver = default_driver
        self._local_host = sip_local_host
        self._public_host = sip_public_host

    def idempotent(self, params: CallScript) -> bool:
        return False  # a second call is a second call: the far end sees it, and may charge it

    def secrets_used(self, params: CallScript) -> tuple[tuple[str, str], ...]:
        """(field, secret) pairs the step's `secrets:` must list."""
        account = params.dial.account
        if account is None:
            return ()
        return (
            ("dial.account.username_secret", account.username_secret),
            ("dial.account.password_secret", account.password_secret),
        )

    def parse(self, params: Any, path: str) -> CallScript:
        return parse_script(params, path)

    def driver(self, name: str) -> CallDriver:
        """The driver called `name`; imported only when a call needs it (numpy, the engines)."""
        if name == "simulated":
            from runwire.voice.simulated import SimulatedDriver

            return SimulatedDriver()
        from runwire.voice.sip.driver import SipDriver

        return SipDriver(local_host=self._local_host, public_host=self._public_host)

    async def run(self, params: CallScript, context: StepContext) -> StepResult:
        try:
            check(params)
        except InvalidDefinition as error:
            return StepResult(error="; ".join(f"{e.path}: {e.message}" for e in error.errors))
        account = None
        if (spec := params.dial.account) is not None:
            username = context.secrets.get(spec.username_secret)
            password = context.secrets.get(spec.password_secret)
            if username is None or password is None:
                return StepResult(
                    error="with.dial.account: its secrets were not given to the step"
                    " (list them in the step's secrets)"
                )
            account = Account(username, password, spec.domain, spec.register)
        dial = params.dial
        request = DialRequest(
            target=dial.target,
            caller_id=dial.caller_id,
            account=account,
            answer_timeout_seconds=float(dial.answer_timeout),
            codec=dial.codec,
        )
        driver_name = dial.driver or self._default_driver
        try:
            driver = self.driver(driver_name)
            session = await _Session.prepare(params, context)
        except EngineMissing as error:
            return StepResult(error=str(error))
        return await session.run(driver, request)


# ---- one call ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Heard:
    """What one `listen` heard."""

    action: int
    transcript: str
    confidence: float | None
    intent: str | None
    latency_ms: float | None


class _Ear:
    """What the far end sends, pumped from the media for the whole call into a queue.

    `hear` may cancel a wait for the next frame (its start timeout) and go on: a queue loses
    nothing when a get is cancelled, where a driver's generator would be closed by it. What
    arrives between listens (during a press, a say, a wait) waits for the next listen.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Inbound | None] = asyncio.Queue()
        self._ended = False

    async def pump(self, media: MediaLeg, ended: Callable[[], None]) -> None:
        try:
            async for item in media.heard():
                self._queue.put_nowait(item)
            ended()
        finally:
            self._queue.put_nowait(None)

    def __aiter__(self) -> _Ear:
        return self

    async def __anext__(self) -> Inbound:
        if self._ended:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            self._ended = True
            raise StopAsyncIteration
        return item


class _Failed(Exception):
    """The script cannot go on: an expect did not hold, an action timed out, the call ended."""


class _Session:
    """One call: its events, its measurements, its transcript."""

    def __init__(
        self,
        script: CallScript,
        context: StepContext,
        recognizer: Recognizes | None,
        speaker: Speaker | None,
    ) -> None:
        self.script = script
        self.context = context
        self.recognizer = recognizer
        self.speaker = speaker
        self.call: Call | None = None
        self.heard: AsyncIterator[Inbound] | None = None
        self.dialed_at = time.monotonic()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.first_prompt_at: float | None = None
        self.input_ended_at: float | None = None
        self.last: _Heard | None = None
        self.latencies: list[float] = []
        self.confidences: list[float] = []
        self.turns: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.hung_up: tuple[str, str] | None = None
        self.transferred_to: str | None = None
        self.over = asyncio.Event()
        """Set once the call's end is reported (HUNG_UP)."""
        self.failed: tuple[int, str] | None = None

    @classmethod
    async def prepare(cls, script: CallScript, context: StepContext) -> _Session:
        """Load the engines the script needs before dialing: missing ones fail the step at once."""
        names = {type(action.step) for action in script.actions}
        recognizer: Recognizes | None = None
        speaker: Speaker | None = None
        if Listen in names:
            from runwire.voice.recognition_processes import default_recognizer

            # Shared by the process's calls, in worker processes: loading a model takes ~0.5 s,
            # and decoding holds the GIL (see recognition_processes).
            recognizer = await asyncio.to_thread(default_recognizer)
        if Say in names:
            from runwire.voice.tts import Speaker

            speaker = await asyncio.to_thread(Speaker)
        return cls(script, context, recognizer, speaker)

    # -- reporting --

    def ms(self, at: float | None) -> float | None:
        """`at` (monotonic) in ms from the answer."""
        if at is None or self.answered_at is None:
            return None
        return round((at - self.answered_at) * 1000, 1)

    def emit(self, event: CallEvent) -> None:
        if event.at_ms is None and self.answered_at is not None:
            event = replace(event, at_ms=self.ms(time.monotonic()))
        self.context.call(event)

    def line(self, text: str) -> None:
        at = self.ms(time.monotonic())
        stamp = f"[{(at or 0) / 1000:7.2f}s] "
        # Only for the transcript artifact: the CALL events are the live view.
        self.lines.append(stamp + text)

    def progress(self, progress: Progress) -> None:
        if progress is Progress.ANSWERED and self.answered_at is None:
            self.answered_at = time.monotonic()
        self.emit(CallEvent(_PROGRESS[progress]))
        self.line(progress.value.lower())

    def span(
        self,
        name: str,
        started_at: datetime,
        status: str,
        attributes: Mapping[str, Any],
    ) -> None:
        self.context.span(name, SPAN_KIND, started_at, utc_now(), status, attributes)

    # -- the call --

    async def run(self, driver: CallDriver, request: DialRequest) -> StepResult:
        error: str | None = None
        dial_started = utc_now()
        try:
            async with asyncio.timeout(float(self.script.timeout)):
                try:
                    async with driver.dial(request, self.progress) as call:
                        self.call = call
                        if self.answered_at is None:
                            self.progress(Progress.ANSWERED)
                        self.span(
                            "dial",
                            dial_started,
                            spans.SUCCEEDED,
                            {"target": request.target, "driver": driver.name},
                        )
                        await self.converse(call)
                finally:
                    self.ended_at = time.monotonic()
                    self.note_end()
        except CallFailed as failure:
            self.failed = (failure.status, failure.reason)
            self.emit(
                CallEvent(CallEventType.FAILED, sip_status=failure.status, reason=failure.reason)
            )
            self.line(f"failed: {failure.status} {failure.reason}")
            self.span("dial", dial_started, spans.FAILED, {"sip_status": failure.status})
            error = f"the call failed: {failure.status} {failure.reason}"
        except EngineMissing as missing:
            error = str(missing)
        except _Failed as failed:
            error = str(failed)
        except TimeoutError:
            error = f"the call timed out after {float(self.script.timeout):g} s"
        finally:
            # Also on a stop: the recording so far is kept, whatever cancels this again.
            await asyncio.shield(self.store())
        output = self.output()
        return StepResult(
            output=output,
            error=error,
            attributes=self.attributes(),
            observed=Observed(
                latency_ms=max(self.latencies) if self.latencies else None,
                text=json.dumps(output, ensure_ascii=False),
            ),
        )

    async def converse(self, call: Call) -> None:
        ear = _Ear()
        self.heard = ear
        # When the media ends (the far end's BYE), HUNG_UP goes out at once, not at the next action.
        pump = asyncio.create_task(ear.pump(call.media, self.note_end), name="call-step-ear")
        try:
            for index, action in enumerate(self.script.actions):
                if isinstance(action.step, Hangup):
                    await self.hangup(call, index)
                    return
                if call.ended is not None and not isinstance(action.step, Expect | Wait):
                    self.note_end()
                    raise _Failed(
                        f"actions[{index}] ({action.name}): the far end hung up before it"
                        f" ({call.ended.cause})"
                    )
                started = utc_now()
                try:
                    if action.timeout is None:
                        attributes = await self.perform(call, index, action)
                    else:
                        async with asyncio.timeout(float(action.timeout)):
                            attributes = await self.perform(call, index, action)
                except TimeoutError:
                    self.span(action.name, started, spans.FAILED, {"action": index})
                    raise _Failed(
                        f"actions[{index}] ({action.name}) timed out after"
                        f" {float(action.timeout or 0):g} s"
                    ) from None
                except _Failed as failed:
                    self.span(action.name, started, spans.FAILED, {"action": index})
                    raise failed
                except asyncio.CancelledError:
                    self.span(action.name, started, spans.CANCELLED, {"action": index})
                    await self.hangup_within_grace(call)
                    raise
                self.span(action.name, started, spans.SUCCEEDED, {"action": index, **attributes})
        finally:
            pump.cancel()
            await asyncio.wait((pump,))

    async def hangup_within_grace(self, call: Call) -> None:
        """On a stop: BYE now, bounded by the grace period (the driver's exit frees the rest)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.context.grace_seconds):
                await call.hangup()
        self.note_end()

    async def perform(self, call: Call, index: int, action: Action) -> dict[str, Any]:
        step = action.step
        match step:
            case Listen():
                return await self.listen(call, index, step)
            case Expect():
                if step.transferred_to is not None:
                    # Where the call went is known once it has ended: wait for that (the
                    # action's timeout, or the whole call's, bounds the wait).
                    await self.over.wait()
                return self.expect(index, step)
            case Press():
                method = DigitMethod(step.method)
                await call.media.send_digits(
                    step.digits, method, tone_ms=_TONE_MS, gap_ms=_DIGIT_GAP_MS
                )
                # Our input ended with the last tone, not with the silent gap after it: an IVR
                # that answers within that gap has a latency, not a zero.
                self.input_ended_at = time.monotonic() - _DIGIT_GAP_MS / 1000
                self.emit(
                    CallEvent(
                        CallEventType.DTMF_SENT, index, digits=step.digits, method=method.value
                    )
                )
                self.line(f"→ pressed {step.digits} ({method.value})")
                return {"digits": step.digits, "method": method.value}
            case Say():
                assert self.speaker is not None  # loaded by prepare: the script says
                pcm = await asyncio.to_thread(self.speaker.speak, step.text)
                await call.media.play(pcm)
                self.input_ended_at = time.monotonic()
                self.emit(CallEvent(CallEventType.SPEECH_SENT, index, text=step.text))
                self.line(f"→ said: {step.text}")
                return {"text": step.text}
            case Wait():
                await asyncio.sleep(float(step.seconds))
                return {"seconds": float(step.seconds)}
        return {}

    async def listen(self, call: Call, index: int, listen: Listen) -> dict[str, Any]:
        from runwire.voice.listening import hear

        assert self.heard is not None
        since = self.input_ended_at or self.answered_at
        utterance = await hear(
            self.heard,
            start_timeout=float(listen.timeout),
            end_silence_ms=int(float(listen.silence_ms)),
            max_seconds=float(listen.max_seconds),
        )
        if utterance.speech_started is None:
            self.last = _Heard(index, "", None, None, None)
            self.turns.append({"action": index, "transcript": "", "no_input": True})
            if call.ended is None:
                self.emit(CallEvent(CallEventType.NO_INPUT, index))
                self.line("IVR: (no input)")
            else:
                self.note_end()
            return {"no_input": True}
        phrases = self.script.phrases_for(index)
        assert self.recognizer is not None  # loaded by prepare: the script listens
        recognition = await asyncio.to_thread(self.recognizer.recognize, utterance.pcm, phrases)
        transcript = str(recognition.text)
        confidence = round(float(recognition.confidence), 3)
        latency = None
        if since is not None:
            latency = round(max(0.0, utterance.speech_started - since) * 1000, 1)
            self.latencies.append(latency)
        if self.first_prompt_at is None:
            self.first_prompt_at = utterance.speech_started
        self.confidences.append(confidence)
        intent = _intent_of(transcript, self.script.intents)
        self.last = _Heard(index, transcript, confidence, intent, latency)
        started_ms = self.ms(utterance.speech_started)
        ended_ms = self.ms(utterance.speech_ended)
        self.emit(
            CallEvent(
                CallEventType.PROMPT,
                index,
                transcript=transcript,
                confidence=confidence,
                audio_started_ms=started_ms,
                audio_ended_ms=ended_ms,
                latency_ms=latency,
                intent=intent,
            )
        )
        self.line(f"IVR: {transcript} ({confidence:.2f})")
        turn = {
            "action": index,
            "transcript": transcript,
            "confidence": confidence,
            "intent": intent,
            "audio_started_ms": started_ms,
            "audio_ended_ms": ended_ms,
            "latency_ms": latency,
            "constrained": bool(phrases),
        }
        self.turns.append(turn)
        return {k: v for k, v in turn.items() if v is not None and k != "action"}

    def expect(self, index: int, expect: Expect) -> dict[str, Any]:
        from runwire.voice.asr import word_error_rate

        problems: list[str] = []
        matched: list[str] = []
        if (uri := expect.transferred_to) is not None:
            if self.transferred_to == uri:
                matched.append(f"transferred to {uri}")
            elif self.transferred_to is None:
                problems.append(f"the call was not transferred (to {uri})")
            else:
                problems.append(f"the call was transferred to {self.transferred_to}, not {uri}")
        last = self.last
        if last is None and expect.about_prompt:
            raise _Failed(f"actions[{index}] expect: nothing was heard yet (listen first)")
        if last is None:
            last = _Heard(index, "", None, None, None)
        heard = last.transcript
        if (needle := expect.transcript_contains) is not None:
            if needle.lower() in heard.lower():
                matched.append(f"transcript contains {needle!r}")
            else:
                problems.append(f"transcript does not contain {needle!r}")
        if (pattern := expect.matches) is not None:
            if re.search(pattern, heard, re.IGNORECASE):
                matched.append(f"transcript matches {pattern!r}")
            else:
                problems.append(f"transcript does not match {pattern!r}")
        if (wer := expect.wer_below) is not None:
            rate = word_error_rate(wer.text, heard)
            if rate < float(wer.max):
                matched.append(f"word error rate {rate:.2f} < {float(wer.max):g}")
            else:
                problems.append(
                    f"word error rate {rate:.2f} against {wer.text!r} is not below"
                    f" {float(wer.max):g}"
                )
        if (intent := expect.intent_is) is not None:
            if last.intent == intent:
                matched.append(f"intent {intent}")
            else:
                problems.append(f"intent is {last.intent or 'none'}, not {intent}")
        if (latency := expect.latency_below_ms) is not None:
            if last.latency_ms is not None and last.latency_ms < float(latency):
                matched.append(f"latency {last.latency_ms:g} ms < {float(latency):g} ms")
            else:
                shown = "unknown" if last.latency_ms is None else f"{last.latency_ms:g} ms"
                problems.append(f"latency {shown} is not below {float(latency):g} ms")
        if (floor := expect.confidence_above) is not None:
            if last.confidence is not None and last.confidence > float(floor):
                matched.append(f"confidence {last.confidence:.2f} > {float(floor):g}")
            else:
                problems.append(
                    f"confidence {last.confidence or 0:.2f} is not above {float(floor):g}"
                )
        if problems:
            self.line(f"✗ {'; '.join(problems)}")
            if not expect.about_prompt:
                raise _Failed(f"actions[{index}] expect: {'; '.join(problems)}")
            said = f"{heard!r} (confidence {last.confidence or 0:.2f})" if heard else "nothing"
            raise _Failed(
                f"actions[{index}] expect: {'; '.join(problems)}; heard at"
                f" actions[{last.action}]: {said}"
            )
        description = "; ".join(matched)
        self.emit(CallEvent(CallEventType.MATCHED, index, matched=description, intent=last.intent))
        self.line(f"✓ matched {description}")
        return {"matched": description}

    async def hangup(self, call: Call, index: int) -> None:
        started = utc_now()
        await call.hangup()
        self.note_end()
        self.span("hangup", started, spans.SUCCEEDED, {"action": index})

    def note_end(self) -> None:
        """Report how the call ended, once, when it has."""
        if self.hung_up is not None or self.call is None:
            return
        ended = self.call.ended
        if ended is None:
            return
        if ended.transferred_to is not None:
            self.transferred_to = ended.transferred_to
            self.emit(CallEvent(CallEventType.TRANSFERRED, target=ended.transferred_to))
            self.line(f"↪ transferred to {ended.transferred_to}")
        self.hung_up = (ended.by.value, ended.cause)
        self.emit(CallEvent(CallEventType.HUNG_UP, by=ended.by.value, cause=ended.cause))
        who = "us" if ended.by is HungUpBy.US else "far end"
        self.line(f"hung up by {who} ({ended.cause})")
        self.over.set()

    # -- results --

    def metrics(self) -> dict[str, Any]:
        answered = self.answered_at
        metrics: dict[str, Any] = {
            "answered": answered is not None,
            "time_to_answer_ms": None
            if answered is None
            else round((answered - self.dialed_at) * 1000, 1),
            "time_to_first_prompt_ms": self.ms(self.first_prompt_at),
            "duration_ms": None
            if answered is None or self.ended_at is None
            else round((self.ended_at - answered) * 1000, 1),
            "latency_ms": list(self.latencies),
            "latency_p50_ms": _percentile(self.latencies, 50),
            "latency_p95_ms": _percentile(self.latencies, 95),
            "latency_max_ms": max(self.latencies) if self.latencies else None,
            "confidence_mean": round(statistics.fmean(self.confidences), 3)
            if self.confidences
            else None,
            "confidence_min": min(self.confidences) if self.confidences else None,
            "transferred_to": self.transferred_to,
        }
        if self.hung_up is not None:
            metrics["hung_up_by"], metrics["hangup_cause"] = self.hung_up
        if self.failed is not None:
            metrics["sip_status"], metrics["reason"] = self.failed
        return metrics

    def output(self) -> dict[str, Any]:
        return {
            "call": self.metrics(),
            "turns": self.turns,
            "transcript": "\n".join(self.lines),
        }

    def attributes(self) -> dict[str, Any]:
        """The call's figures, on the attempt's span and row; executionMetrics reads them."""
        figures: dict[str, Any] = {
            f"call_{name}": value
            for name, value in self.metrics().items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        figures["call_turn_latency_ms"] = list(self.latencies)
        figures["call_confidences"] = list(self.confidences)
        return figures

    async def store(self) -> None:
        """The recording and the transcript, as artifacts of the attempt."""
        try:
            if self.call is not None:
                sent, heard = self.call.media.recording()
                await self.context.artifact("call.wav", "audio/wav", wav_bytes([sent, heard]))
            if self.lines:
                text = "\n".join(self.lines) + "\n"
                await self.context.artifact(
                    "transcript.txt", "text/plain; charset=utf-8", text.encode()
                )
        except RunwireError as error:
            # The call's result stands without its files; say why they are missing.
            self.context.output(OutputStream.LOG, f"recording not stored: {error.message}\n")


def _intent_of(transcript: str, intents: Mapping[str, tuple[str, ...]]) -> str | None:
    """The intent whose phrase the transcript says, the longest phrase winning."""
    words = f" {' '.join(_WORD.findall(transcript.lower()))} "
    best: tuple[int, str] | None = None
    for name, phrases in intents.items():
        for phrase in phrases:
            said = " ".join(_WORD.findall(phrase.lower()))
            if said and f" {said} " in words and (best is None or len(said) > best[0]):
                best = (len(said), name)
    return None if best is None else best[1]


def _percentile(values: list[float], percent: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(percent / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
