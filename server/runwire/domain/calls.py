"""What a `call` step reports as its call goes: one typed CALL event per moment of the call.

DIALING, RINGING and ANSWERED follow the call's setup; PROMPT is what the far end said (its
transcript, recognition confidence, and when its audio started and ended, in ms from the answer);
DTMF_SENT and SPEECH_SENT are what we sent; MATCHED is an `expect` that held; NO_INPUT a `listen`
that heard nothing; TRANSFERRED says where the far end sent the call (a REFER), just before its
HUNG_UP; HUNG_UP says by whom and why; FAILED carries the SIP status of a call that was
never answered. Events are the live view; a late joiner reads them from the event log.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any


class CallEventType(StrEnum):
    DIALING = "DIALING"
    RINGING = "RINGING"
    ANSWERED = "ANSWERED"
    PROMPT = "PROMPT"
    DTMF_SENT = "DTMF_SENT"
    SPEECH_SENT = "SPEECH_SENT"
    MATCHED = "MATCHED"
    NO_INPUT = "NO_INPUT"
    TRANSFERRED = "TRANSFERRED"
    HUNG_UP = "HUNG_UP"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One moment of a call; only the fields its type uses are set.

    `action` is the index of the script action that caused it (None for the call's own setup and
    end). PROMPT: transcript, confidence, audio_started_ms, audio_ended_ms, latency_ms (from our
    last input's end, or the answer, to the prompt's start). DTMF_SENT: digits, method.
    SPEECH_SENT: text. MATCHED: matched (the expectation, readable), intent. TRANSFERRED: target
    (the URI). HUNG_UP: by (US or FAR_END), cause. FAILED: sip_status, reason. `at_ms` is when it
    happened, from the answer.
    """

    call: CallEventType
    action: int | None = None
    at_ms: float | None = None
    transcript: str | None = None
    confidence: float | None = None
    audio_started_ms: float | None = None
    audio_ended_ms: float | None = None
    latency_ms: float | None = None
    digits: str | None = None
    method: str | None = None
    text: str | None = None
    matched: str | None = None
    intent: str | None = None
    by: str | None = None
    cause: str | None = None
    sip_status: int | None = None
    reason: str | None = None
    target: str | None = None

    def event_data(self) -> dict[str, Any]:
        """The CALL event's data: `call` and the fields that are set."""
        data: dict[str, Any] = {"call": self.call.value}
        for item in fields(self)[1:]:
            value = getattr(self, item.name)
            if value is not None:
                data[item.name] = value
        return data
